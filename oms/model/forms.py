"""Forms: the JSON Schema a human step's result (or a waiting step's signal data) must satisfy.

Checked with :mod:`jsonschema` (draft 2020-12, formats such as ``date`` checked too):
the schema when the definition is made, the result when a person completes the
step. A result that does not fit is refused with every field named, so a page can
show each message next to its field.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from ..exceptions import InvalidPayload

__all__ = ["FormError", "check_form", "check_schema", "validator"]

#: The widest form a definition may carry, in characters of its JSON (it is stored with every version).
MAX_FORM_CHARS = 64_000


class FormError(InvalidPayload):
    """A result (or a signal's data) does not satisfy its step's form; ``fields`` maps each field's path to what is
    wrong with it."""

    def __init__(self, step_id: str, fields: dict[str, str], what: str = "the result") -> None:
        self.step_id, self.fields = step_id, fields
        said = "; ".join(f"{name}: {message}" for name, message in fields.items())
        super().__init__(f"{what} does not fit the form of step {step_id!r}: {said}")


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema of an object, else ``ValueError`` saying what is wrong with it."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path).lstrip(".")
        raise ValueError(f"not a JSON Schema{f' at {where}' if where else ''}: {exc.message}") from None
    if schema.get("type", "object") != "object":
        raise ValueError(f"a form describes a JSON object (type: object), not {schema.get('type')!r}")
    return schema


def _field(error: ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    required = error.validator_value
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
        # one error per missing property, each naming it in its message: the first missing one for each would name
        # only that one
        missing = next((name for name in required if name not in error.instance
                        and error.message == f"{name!r} is a required property"), None)
        if missing is not None:
            path.append(str(missing))
    return ".".join(path) or "(the result)"


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """The validator of a form, formats (``date``, ``email``…) checked too."""
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_form(form: Draft202012Validator, result: dict[str, Any] | None, step_id: str,
               what: str = "the result") -> None:
    """Raise :class:`FormError` naming each field of ``result`` (``what`` it is) that the ``form`` refuses."""
    fields: dict[str, str] = {}
    for error in sorted(form.iter_errors(result or {}), key=lambda e: [str(p) for p in e.absolute_path]):
        fields.setdefault(_field(error), error.message)
    if fields:
        raise FormError(step_id, fields, what)
