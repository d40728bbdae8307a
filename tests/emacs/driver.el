;;; driver.el --- batch Emacs + Eglot session for tests/test_emacs_e2e.py  -*- lexical-binding: t -*-
;;
;;   MLSP_OUT=out.json MLSP_EL=<repo>/editors/emacs/migration-lsp.el MLSP_HOVER_FILE=... \
;;     emacs --batch -Q -l tests/emacs/driver.el <project>/migrations/versions/4327c6748b81_add_post_slug.py
;;
;; Loads the shipped editors/emacs/migration-lsp.el as a user's init file would, starts the
;; server the way `M-x eglot' does, and plays a session through Eglot's own UI entry points
;; (Flymake, `eglot-code-actions' with the user's pick, ElDoc's hover function, xref).  The
;; prompts a user would answer (completing-read, y-or-n-p) are answered by stubs that record
;; what they were shown.  The test asserts on the JSON; the driver only records.
;; Exit codes: 0 done, 2 eglot not managing the buffer, 3 global timeout, 4 Lisp error.

(require 'package)
;; Debian's elpa-eglot lives in dh-elpa's directory, which -Q leaves out
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa")
(package-initialize)
(require 'cl-lib)
(require 'json)
;; the shipped snippet, as an init file has it: before Eglot is loaded
(load (getenv "MLSP_EL") nil t)
(require 'eglot)

(defvar mlsp-out (getenv "MLSP_OUT"))
(defvar mlsp-res nil)
(defvar mlsp-wait (string-to-number (or (getenv "MLSP_WAIT") "15")))

(defun mlsp-put (k v) (setq mlsp-res (cons (cons k v) (assq-delete-all k mlsp-res))))
(defvar mlsp-started (float-time))
(defun mlsp-step (name)
  (mlsp-put 'steps (vconcat (alist-get 'steps mlsp-res) (list name)))
  (mlsp-put 'step_seconds (vconcat (alist-get 'step_seconds mlsp-res)
                                   (list (/ (round (* 100 (- (float-time) mlsp-started))) 100.0)))))

(defun mlsp-finish (code)
  (mlsp-put 'exit_code code)
  (mlsp-put 'events_buffer
            (let ((server (ignore-errors (eglot-current-server))))
              (when server
                (with-current-buffer (jsonrpc-events-buffer server)
                  (let ((s (buffer-string))) (substring s (max 0 (- (length s) 4000))))))))
  (with-temp-file mlsp-out (insert (json-encode mlsp-res)))
  (dolist (b (buffer-list)) (with-current-buffer b (set-buffer-modified-p nil)))
  (kill-emacs code))

(defun mlsp-idle ()
  "Run the idle timers, as when the user stops typing.
Batch Emacs is never idle, yet Eglot sends didChange, and ElDoc and Flymake run, from idle
timers."
  (dolist (timer (copy-sequence timer-idle-list))
    (when (memq timer timer-idle-list)
      (timer-event-handler timer))))

(defun mlsp-wait-for (pred what)
  (let ((deadline (+ (float-time) mlsp-wait)))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05)
      (mlsp-idle))
    (or (funcall pred) (error "timed out waiting for %s" what))))

(run-at-time (string-to-number (or (getenv "MLSP_TIMEOUT") "60")) nil
             (lambda () (mlsp-put 'error "global timeout") (mlsp-finish 3)))

(defun mlsp-diags ()
  "Flymake's diagnostics in this buffer: 1-based line, column, type, text."
  (vconcat
   (mapcar (lambda (d)
             (let ((beg (flymake-diagnostic-beg d)))
               `((line . ,(line-number-at-pos beg))
                 (column . ,(save-excursion (goto-char beg) (current-column)))
                 (end_column . ,(save-excursion (goto-char (flymake-diagnostic-end d)) (current-column)))
                 (type . ,(symbol-name (flymake-diagnostic-type d)))
                 (text . ,(flymake-diagnostic-text d)))))
           (sort (flymake-diagnostics) (lambda (a b) (< (flymake-diagnostic-beg a) (flymake-diagnostic-beg b)))))))

(defun mlsp-has (code line)
  (cl-some (lambda (d) (and (= (line-number-at-pos (flymake-diagnostic-beg d)) line)
                            (string-match-p (format "\\[%s\\]" code) (flymake-diagnostic-text d))))
           (flymake-diagnostics)))

(defun mlsp-line (n)
  (save-excursion (goto-char (point-min)) (forward-line (1- n))
                  (buffer-substring-no-properties (line-beginning-position) (line-end-position))))

(defun mlsp-goto (needle)
  "Point on NEEDLE in the `down_revision' line."
  (goto-char (point-min))
  (let ((case-fold-search nil)) (re-search-forward "^down_revision"))
  (search-forward needle (line-end-position))
  (goto-char (+ (match-beginning 0) 2)))

(defun mlsp-pick-action (prefix key)
  "M-x eglot-code-actions at point, the user picking the action whose title starts with PREFIX."
  (let ((last-nonmenu-event ?\r)          ; a keyboard invocation: prompt, no popup menu
        (yes-no nil))
    (cl-letf (((symbol-function 'completing-read)
               (lambda (prompt collection &rest _)
                 (mlsp-put key `((prompt . ,prompt)
                                 (titles . ,(vconcat (mapcar #'car collection)))))
                 (or (cl-find-if (lambda (title) (string-prefix-p prefix title)) (mapcar #'car collection))
                     (error "no action %S offered" prefix))))
              ((symbol-function 'y-or-n-p)
               (lambda (prompt) (push prompt yes-no) t)))
      ;; for a Command, Eglot waits for workspace/executeCommand, during which the server's
      ;; workspace/applyEdit arrives and is confirmed through y-or-n-p
      (call-interactively #'eglot-code-actions)
      (mlsp-put (intern (format "%s_confirm" key)) (vconcat yes-no)))))

(defun mlsp-run ()
  (find-file (car command-line-args-left))
  (setq command-line-args-left nil)       ; don't let Emacs visit FILE again
  (let ((typo-buf (current-buffer)))
    (mlsp-put 'major_mode (symbol-name major-mode))
    (mlsp-put 'contact (format "%S" (eglot--guess-contact)))
    (apply #'eglot (eglot--guess-contact)) ; same as M-x eglot, non-interactive
    (mlsp-wait-for (lambda () eglot--managed-mode) "eglot to manage the buffer")
    (let ((server (eglot-current-server)))
      (mlsp-put 'server_name (plist-get (eglot--server-info server) :name))
      (mlsp-put 'server_command (vconcat (process-command (jsonrpc--process server))))
      (mlsp-put 'project_root (expand-file-name (project-root (eglot--project server)))))
    (mlsp-step "managed")

    ;; 1. diagnostics pushed on didOpen, shown by Flymake
    (mlsp-wait-for (lambda () (and (mlsp-has "G001" 15) (mlsp-has "G002" 16))) "G001 and G002")
    (mlsp-put 'diagnostics (mlsp-diags))
    (mlsp-step "diagnostics")

    ;; 2. M-x eglot-code-actions on the typo, pick "Change to ..."
    (mlsp-goto "bd474000086b")
    (mlsp-pick-action "Change to 'bd474000068b'" 'actions_g002)
    (mlsp-wait-for (lambda () (string-match-p "bd474000068b" (mlsp-line 16))) "the fix to edit the buffer")
    (mlsp-put 'line_after_fix (mlsp-line 16))
    (mlsp-put 'docstring_after_fix (mlsp-line 4))
    (mlsp-put 'modified_after_fix (if (buffer-modified-p) t :json-false))
    (mlsp-step "fix applied")
    (mlsp-wait-for (lambda () (and (not (mlsp-has "G002" 16)) (mlsp-has "G001" 15))) "G002 to go away")
    (mlsp-put 'diagnostics_after_fix (mlsp-diags))
    (mlsp-step "G002 cleared")

    ;; 3. Merge heads on the G001 line: Eglot 1.9 cannot create files from a code action's
    ;; edit, so the server offers a Command and sends workspace/applyEdit itself
    (goto-char (point-min))
    (let ((case-fold-search nil)) (re-search-forward "^revision: "))
    (let ((before (buffer-list)))
      (mlsp-pick-action "Merge heads" 'actions_g001)
      (let (merge-buf)
        (mlsp-wait-for (lambda ()
                         (setq merge-buf (cl-find-if (lambda (b) (and (not (memq b before)) (buffer-file-name b)
                                                                      (> (buffer-size b) 0)))
                                                     (buffer-list))))
                       "the merge revision buffer")
        (with-current-buffer merge-buf
          (mlsp-put 'merge_file (buffer-file-name))
          (mlsp-put 'merge_text (buffer-substring-no-properties (point-min) (point-max)))
          (mlsp-put 'merge_managed (if eglot--managed-mode t :json-false)))
        (mlsp-step "merge created")
        (save-some-buffers t)               ; C-x s !
        (mlsp-wait-for (lambda () (with-current-buffer typo-buf (not (mlsp-has "G001" 15))))
                       "G001 to go away after the merge")
        (mlsp-put 'diagnostics_after_merge (with-current-buffer typo-buf (mlsp-diags)))
        (mlsp-step "heads merged")))

    ;; 4. hover on a down_revision id, through Eglot's ElDoc function
    (find-file (getenv "MLSP_HOVER_FILE"))
    (mlsp-wait-for (lambda () eglot--managed-mode) "eglot to manage the second buffer")
    (mlsp-goto "'6a4961b6b2ca'")
    (mlsp-put 'hover_line (line-number-at-pos))
    (let (doc)
      (eglot-hover-eldoc-function (lambda (info &rest _) (setq doc (or info ""))))
      (mlsp-wait-for (lambda () doc) "the hover")
      (mlsp-put 'hover doc))
    (mlsp-step "hover")

    ;; 5. M-. on the id: xref jumps to the parent revision
    (let ((here (current-buffer)))
      (xref-find-definitions (xref-backend-identifier-at-point (xref-find-backend)))
      (mlsp-wait-for (lambda () (not (eq (current-buffer) here))) "the jump to the definition")
      (mlsp-put 'definition_file (buffer-file-name))
      (mlsp-put 'definition_line (line-number-at-pos))
      (mlsp-put 'definition_text (buffer-substring-no-properties (point) (min (point-max) (+ (point) 12)))))
    (mlsp-step "definition")
    (mlsp-finish 0)))

(condition-case err
    (mlsp-run)
  (error (mlsp-put 'error (format "%S" err)) (mlsp-finish 4)))
