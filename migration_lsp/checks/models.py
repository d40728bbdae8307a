"""Rule family M: the SQLAlchemy models vs the schema the migrations build (M001–M004)."""

from __future__ import annotations

from pathlib import Path

from ..compare import (
    CompareError,
    CompareOptions,
    Difference,
    compare,
    with_env_options,
)
from ..core import Diagnostic, Severity
from ..models import MetadataSource, ModelTables
from ..rules import severity
from ..schema import SchemaState


def check_models(
    schema: SchemaState | None, models: ModelTables | None, source: MetadataSource, options: CompareOptions,
    models_off: str | None, env_name: str, fallback: Path,
) -> tuple[list[Diagnostic], list[Difference]]:
    """M004 when the models cannot be had (`models_off` says why they are not even tried);
    otherwise one M001–M003 per difference."""
    where, span = source.location(fallback)
    left_out = severity("M004", Severity.INFO)  # on purpose, or a part of the comparison: info
    if source.disabled:
        return [], []  # target_metadata = None: the project compares nothing, neither do we
    if models_off:
        return [Diagnostic("M004", left_out, where, span, f"models not loaded: {models_off}", env_name,
                           {"drift": "not checked"})], []
    if models is None or schema is None:
        return [], []  # still loading
    if models.disabled:
        return [], []  # env.py passes target_metadata=None (found by running it)
    if models.error:  # a warning: CI must not pass silently with drift unchecked
        return [Diagnostic("M004", severity("M004"), where, span, f"models could not be loaded: {models.error}",
                           env_name, {"drift": "not checked"})], []
    options = with_env_options(options, models.options, models.excluded, models.judged, models.type_decisions)
    try:
        differences = compare(schema, models.tables, options)
    except CompareError as exc:
        return [Diagnostic("M004", severity("M004"), where, span, f"models could not be compared: {exc}", env_name,
                           {"drift": "not checked"})], []
    out = []
    for diff in differences:
        if diff.kind == "extra":
            origin = diff.schema_origin
            message = f"{diff.what} exists in the migrations but not in the models"
        elif diff.kind == "missing":
            origin = diff.model_origin
            message = f"{diff.what} is in the models but no migration creates it"
        else:
            origin = diff.model_origin or diff.schema_origin
            message = f"{diff.what} differs: {diff.detail}"
        path, at = origin if origin else (where, span)
        out.append(Diagnostic(diff.code, severity(diff.code), path, at, message, env_name,
                              {"what": diff.what}))
    if models.note:
        out.append(Diagnostic("M004", left_out, where, span, models.note, env_name))
    if options.unsure:
        out.append(Diagnostic("M004", left_out, where, span,
                              f"env.py passes {' and '.join(options.unsure)} as a function, which needs the "
                              "database's columns: that part of the comparison is left out", env_name))
    if schema.unknown:
        path, at = schema.unknown[0]
        out.append(Diagnostic("M004", left_out, where, span,
                              f"tables and columns added or dropped are not compared: {path.name} line "
                              f"{at.line + 1} calls a helper that cannot be followed statically", env_name))
    for path, at in dict.fromkeys(schema.opaque):  # once per call
        out.append(Diagnostic("M004", left_out, path, at, "the table this call changes cannot be read "
                              "statically: its effect is not compared (every table with a known history is)",
                              env_name))
    return out, differences
