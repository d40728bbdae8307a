;;; migration-lsp.el --- Eglot setup for migration-lsp  -*- lexical-binding: t -*-
;;
;; Copy this into your init file (or `load' it).  Needs Eglot (built into Emacs 29+;
;; Emacs 28: `M-x package-install RET eglot', or Debian's `elpa-eglot') and the
;; `migration-lsp' command on `exec-path' (pip install migration-lsp, or the project's venv).
;;
;; Then open a migration file and `M-x eglot': diagnostics appear through Flymake,
;; hover on a revision id through ElDoc, `M-.' jumps to the parent revision,
;; `M-x eglot-code-actions' offers the quick fixes (Merge heads, Did you mean, ...).
;;
;; Eglot runs ONE server per major mode and project: with this entry first in
;; `eglot-server-programs', Python buffers get migration-lsp instead of pylsp/pyright.
;; Pick per project with `C-u M-x eglot', or see editors/README.md for running both.

(with-eval-after-load 'eglot
  (add-to-list 'eglot-server-programs
               '((python-mode python-ts-mode)
                 . ("migration-lsp" "serve"
                    ;; :trusted :json-false = never import the project's models (graph checks only)
                    :initializationOptions (:trusted t)))))

;; Projects that are not in version control: make the directory holding alembic.ini the
;; project root (otherwise Eglot uses the file's own directory).  Appended, so a VCS root
;; still wins.
(defun migration-lsp-project-root (dir)
  "Return a transient project for the nearest directory above DIR with alembic.ini."
  (let ((root (locate-dominating-file dir "alembic.ini")))
    (and root (cons 'transient root))))
(add-hook 'project-find-functions #'migration-lsp-project-root t)

;; Optional: settings (also readable from .dir-locals.el), e.g.
;; (setq-default eglot-workspace-configuration
;;               '(:migrationLsp (:ignore ["S005"] :models "app.models:Base.metadata")))
;;
;; Optional: start automatically in every Python buffer.
;; (add-hook 'python-mode-hook #'eglot-ensure)

;;; migration-lsp.el ends here
