"""Message serializer: JSON primitives on the wire, RequestContext in code.

Arguments and results are plain JSON values already (dicts, lists, strings,
numbers, booleans, null); datetimes that slip through become ISO-8601 strings
so a caller in any language can read them.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging
from oslo_serialization import jsonutils

from compute_agent import context as ca_context


class JsonPayloadSerializer(oslo_messaging.Serializer):
    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return jsonutils.to_primitive(entity, convert_instances=True)

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        if isinstance(ctxt, dict):
            return ctxt
        return ctxt.to_dict()

    def deserialize_context(self, ctxt: dict[str, Any]) -> ca_context.RequestContext:
        return ca_context.from_wire(ctxt)
