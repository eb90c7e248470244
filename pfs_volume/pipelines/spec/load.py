"""Reading a spec's text: JSON or YAML, strictly (no key twice, no oversized text)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from pfs_volume import strict_json
from pfs_volume.errors import InvalidRequest
from pfs_volume.pipelines.spec.model import MAX_SPEC_BYTES, PipelineSpec
from pfs_volume.pipelines.spec.validate import validate


def parse_spec(text: str | bytes, *, filename_hint: str | None = None) -> PipelineSpec:
    """Parse and validate a spec written in JSON or YAML (see ``load_spec``, ``validate``).

    Raises:
        InvalidRequest: for text ``load_spec`` refuses, or a spec that does not validate.
    """
    return validate(load_spec(text, filename_hint=filename_hint))


def load_spec(text: str | bytes, *, filename_hint: str | None = None) -> Any:
    """Read a spec written in JSON or YAML, not yet validated.

    Args:
        text: the spec's text (bytes are decoded as UTF-8).
        filename_hint: the file it came from, if any: ``.json`` means JSON only,
            ``.yaml``/``.yml`` YAML only; otherwise text starting with ``{`` or ``[`` is
            read as JSON (then as YAML, for a YAML flow mapping), anything else as YAML.
    Returns:
        What the text holds (give it to ``validate``).
    Raises:
        InvalidRequest: for text that is not UTF-8, JSON or YAML, has a key twice in
            one mapping, or is too long.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise InvalidRequest(
            f"the pipeline spec is {size} bytes long; at most {MAX_SPEC_BYTES} are allowed"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the pipeline spec is not UTF-8 text: {exc}") from None
    suffix = filename_hint.lower().rpartition(".")[2] if filename_hint else ""
    if suffix == "json":
        return _load_json(text)
    if suffix in ("yaml", "yml"):
        return _load_yaml(text)
    if text.lstrip().startswith(("{", "[")):
        try:
            return _load_json(text)
        except InvalidRequest as json_error:
            try:
                return _load_yaml(text)
            except InvalidRequest:
                raise json_error from None
    return _load_yaml(text)


def _load_json(text: str) -> Any:
    return strict_json.loads(text, "the pipeline spec", MAX_SPEC_BYTES)


def _load_yaml(text: str) -> Any:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"the pipeline spec is not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the pipeline spec is nested too deeply") from None
    strict_json.check_tree(raw, "the pipeline spec")
    return raw


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error
    (PyYAML keeps the last one silently). Keys merged in with ``<<`` may be overridden."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports it
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
