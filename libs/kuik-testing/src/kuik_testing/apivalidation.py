"""kube-apiserver's validation rules, as the API fake enforces them (Kubernetes 1.30+).

Ported so that a test against `FakeApiServer` fails where a real cluster would: object names per
resource, labels, annotations, finalizers, Secret immutability, events.k8s.io/v1 Events, and
the request and storage size limits. Messages and `Status` shapes are the server's own, so code
that reads `details.causes` or the message sees what it will see in production. Each rule
names its origin in the kubernetes/kubernetes tree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_REQUEST_BODY_BYTES",
    "MAX_STORED_OBJECT_BYTES",
    "FieldError",
    "NameRule",
    "invalid_details",
    "invalid_message",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "validate_create",
    "validate_update",
]

JSON = dict[str, Any]

# staging/src/k8s.io/apiserver/pkg/server/config.go: MaxRequestBodyBytes = 3 MiB ("etcd
# limits objects to 1.5 MiB; JSON is allowed up to twice that before it is converted").
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
# etcd's --max-request-bytes default (server/embed/config.go DefaultMaxRequestBytes, 1.5 MiB).
MAX_STORED_OBJECT_BYTES = 1572864

# staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
# pkg/apis/core/validation/events.go
_EVENT_NOTE_LIMIT = 1024
_EVENT_SHORT_LIMIT = 128
# staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go
_TOTAL_ANNOTATION_SIZE = 256 * 1024
# pkg/apis/core/types.go MaxSecretSize
_MAX_SECRET_SIZE = 1024 * 1024


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """`validation.RegexError`, double spaces included."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    text = message + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(
            _regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character",
                _DNS1123_LABEL_FMT,
                "my-name",
                "123-abc",
            )
        )
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN_FMT,
                "example.com",
            )
        )
    return errors


def is_qualified_name(value: str) -> list[str]:
    """Label keys, annotation keys, finalizers: `[prefix/]name`."""
    errors: list[str] = []
    parts = value.split("/")
    example = _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name " + example + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_len(63))
    if not _QUALIFIED_NAME.fullmatch(name):
        errors.append("name part " + example)
    return errors


def is_valid_label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errors


def _is_path_segment(value: str) -> list[str]:
    """staging/src/k8s.io/apimachinery/pkg/api/validation/path/name.go"""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


@dataclass(frozen=True, slots=True)
class FieldError:
    """`field.Error`: its `ErrorBody()` is a cause's message, `str()` the aggregate's item."""

    type: str  # FieldValueInvalid | FieldValueRequired | FieldValueForbidden | FieldValueTooLong
    field: str
    value: Any = ""
    detail: str = ""

    def body(self) -> str:
        words = {
            "FieldValueInvalid": "Invalid value",
            "FieldValueRequired": "Required value",
            "FieldValueForbidden": "Forbidden",
            "FieldValueTooLong": "Too long",
        }[self.type]
        if self.type == "FieldValueInvalid":
            if isinstance(self.value, str):
                words += ": " + _go_quote(self.value)
            elif isinstance(self.value, bool):
                words += ": " + str(self.value).lower()
            else:
                words += f": {self.value}"
        return words + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def _go_quote(text: str) -> str:
    """Go's %q for the printable strings validation quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def invalid_message(qualified_kind: str, name: str, errors: Sequence[FieldError]) -> str:
    """`errors.NewInvalid`'s message: one error bare, several in brackets (duplicates once)."""
    items = list(dict.fromkeys(str(e) for e in errors))
    text = items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"
    return f"{qualified_kind} {_go_quote(name)} is invalid: {text}"


def invalid_details(group: str, kind: str, name: str, errors: Sequence[FieldError]) -> JSON:
    return {
        "name": name,
        "group": group,
        "kind": kind,
        "causes": [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors],
    }


# ------------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class NameRule:
    """How a resource's names are checked (`ValidateNameFunc`)."""

    kind: str  # "subdomain" | "label" | "path"

    def check(self, name: str, prefix: bool) -> list[str]:
        if self.kind == "path":
            return _is_path_segment(name)
        if prefix and len(name) > 1 and name.endswith("-"):
            name = name[:-1] + "a"  # maskTrailingDash: a generateName may end in '-'
        return is_dns1123_label(name) if self.kind == "label" else is_dns1123_subdomain(name)


def name_rule(group: str, plural: str) -> NameRule:
    """pkg/apis/core/validation: Namespaces are DNS labels (ValidateNamespaceName); core/v1
    Events only path segments (legacy validation; the generic registry's
    ValidatePathSegmentName); everything else kuik touches, CRs included, DNS subdomains."""
    if (group, plural) == ("", "namespaces"):
        return NameRule("label")
    if (group, plural) == ("", "events"):
        return NameRule("path")
    return NameRule("subdomain")


def _meta_common(meta: Mapping[str, Any], namespaced: bool) -> list[FieldError]:
    """`validateObjectMetaAccessorWithOptsCommon` (objectmeta.go) and v1validation.ValidateLabels."""
    errors: list[FieldError] = []
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errors.append(FieldError("FieldValueRequired", "metadata.namespace"))
        for msg in is_dns1123_label(namespace) if namespace else ():
            errors.append(FieldError("FieldValueInvalid", "metadata.namespace", namespace, msg))
    for key, value in (meta.get("labels") or {}).items():
        for msg in is_qualified_name(str(key)):
            errors.append(FieldError("FieldValueInvalid", "metadata.labels", key, msg))
        for msg in is_valid_label_value(str(value)):
            errors.append(FieldError("FieldValueInvalid", "metadata.labels", value, msg))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        for msg in is_qualified_name(str(key).lower()):
            errors.append(FieldError("FieldValueInvalid", "metadata.annotations", key, msg))
    # ValidateAnnotationsSize: len() of Go strings, i.e. UTF-8 bytes
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > _TOTAL_ANNOTATION_SIZE:
        errors.append(
            FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                detail=f"must have at most {_TOTAL_ANNOTATION_SIZE} bytes",
            )
        )
    for finalizer in meta.get("finalizers") or ():
        for msg in is_qualified_name(str(finalizer)):
            errors.append(FieldError("FieldValueInvalid", "metadata.finalizers", finalizer, msg))
    return errors


def validate_create(
    group: str, plural: str, namespaced: bool, obj: Mapping[str, Any]
) -> list[FieldError]:
    """What `rest.BeforeCreate` rejects (the strategy's Validate, then ValidateObjectMetaAccessor),
    run after name generation."""
    meta = obj.get("metadata") or {}
    rule = name_rule(group, plural)
    errors: list[FieldError] = []
    generate = meta.get("generateName") or ""
    if generate:
        for msg in rule.check(generate, True):
            errors.append(FieldError("FieldValueInvalid", "metadata.generateName", generate, msg))
    name = meta.get("name") or ""
    if not name:
        errors.append(
            FieldError(
                "FieldValueRequired", "metadata.name", detail="name or generateName is required"
            )
        )
    else:
        for msg in rule.check(name, False):
            errors.append(FieldError("FieldValueInvalid", "metadata.name", name, msg))
    errors.extend(_meta_common(meta, namespaced))
    if (group, plural) == ("", "secrets"):
        errors.extend(_secret(obj))
    if (group, plural) == ("events.k8s.io", "events"):
        errors.extend(_event_v1(obj))
    return errors


def validate_update(
    group: str, plural: str, namespaced: bool, old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[FieldError]:
    """`ValidateObjectMetaAccessorUpdate` plus the per-type update rules kuik can hit."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    errors: list[FieldError] = []
    if old_meta.get("deletionTimestamp"):
        extra = sorted(
            set(new_meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
        )
        if extra:
            listed = ", ".join(_go_quote(f) for f in extra)
            errors.append(
                FieldError(
                    "FieldValueForbidden",
                    "metadata.finalizers",
                    detail="no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{listed}}}",
                )
            )
    errors.extend(e for e in _meta_common(new_meta, namespaced) if e.field != "metadata.namespace")
    if (group, plural) == ("", "secrets"):
        errors.extend(_secret_update(old, new))
    return errors


# ------------------------------------------------------------------------------- types


def _secret(secret: Mapping[str, Any]) -> list[FieldError]:
    """pkg/apis/core/validation ValidateSecret: the total data size (decoded bytes; base64 text
    here, 4/3 of it) and the keys `kubernetes.io/dockerconfigjson` Secrets must have."""
    errors: list[FieldError] = []
    data = secret.get("data") or {}
    size = sum((len(str(v)) * 3) // 4 for v in data.values())
    if size > _MAX_SECRET_SIZE:
        errors.append(
            FieldError(
                "FieldValueTooLong", "data", detail=f"must have at most {_MAX_SECRET_SIZE} bytes"
            )
        )
    if secret.get("type") == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" not in data:
        errors.append(FieldError("FieldValueRequired", "data[.dockerconfigjson]"))
    return errors


def _secret_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """ValidateSecretUpdate: `type` is immutable; an `immutable: true` Secret keeps its data and
    its `immutable`."""
    errors: list[FieldError] = []
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errors.append(
            FieldError("FieldValueInvalid", "type", new.get("type") or "", "field is immutable")
        )
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errors.append(
                FieldError(
                    "FieldValueForbidden",
                    "immutable",
                    detail="field is immutable when `immutable` is set",
                )
            )
        if (new.get("data") or {}) != (old.get("data") or {}):
            errors.append(
                FieldError(
                    "FieldValueForbidden",
                    "data",
                    detail="field is immutable when `immutable` is set",
                )
            )
    return errors + _secret(new)


def _event_v1(event: Mapping[str, Any]) -> list[FieldError]:
    """pkg/apis/core/validation/events.go ValidateEventCreate for events.k8s.io/v1 (the strict
    path; the internal field names are the ones reported). Lengths are Go `len()`: bytes."""
    errors: list[FieldError] = []

    def nbytes(field: str) -> int:
        return len(str(event.get(field) or "").encode())

    regarding = event.get("regarding") or {}
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    if not regarding.get("namespace") and namespace not in ("default", "kube-system"):
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "involvedObject.namespace",
                "",
                "does not match event.namespace",
            )
        )
    controller = str(event.get("reportingController") or "")
    if not controller:
        errors.append(FieldError("FieldValueRequired", "reportingController"))
    for msg in is_qualified_name(controller):
        errors.append(FieldError("FieldValueInvalid", "reportingController", controller, msg))
    for field, path in (
        ("reportingInstance", "reportingInstance"),
        ("action", "action"),
        ("reason", "reason"),
    ):
        if nbytes(field) == 0:
            errors.append(FieldError("FieldValueRequired", path))
        if nbytes(field) > _EVENT_SHORT_LIMIT:
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    path,
                    "",
                    f"can have at most {_EVENT_SHORT_LIMIT} characters",
                )
            )
    if nbytes("note") > _EVENT_NOTE_LIMIT:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "message",
                "",
                f"can have at most {_EVENT_NOTE_LIMIT} characters",
            )
        )
    if not event.get("eventTime"):
        errors.append(FieldError("FieldValueRequired", "eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(
            FieldError(
                "FieldValueInvalid", "type", "", f"has invalid value: {event.get('type') or ''}"
            )
        )
    return errors
