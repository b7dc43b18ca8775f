"""The snapshot request: an instance's root disk as a new Glance image.

``snapshot_instance`` is a call that answers at once with the new image's
id; the work runs on in a worker thread like every request (runner.py),
with task_state ``image_snapshot`` and the export task's progress. The
image is created in Glance first (``queued``, with ``instance_uuid`` and
``image_type = snapshot`` properties), then the driver streams the
snapshot's disk into it (``upload``). Any failure deletes the image, and
the driver leaves nothing in dom0; recovery (``discard_images`` and the
driver's ``discard_snapshots``) does the same for a snapshot an agent
crash interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from compute_agent import exceptions
from compute_agent.compute.requests import driver_view
from compute_agent.compute.runner import RequestRunner
from compute_agent.compute.validation import check_map, check_string, safe_text, validate_uuid
from compute_agent.context import RequestContext
from compute_agent.driver.base import ComputeDriver, Operation
from compute_agent.image.glance import GlanceClient

LOG = logging.getLogger(__name__)

# Image fields the agent decides (or Glance does); a request may not set them.
RESERVED = frozenset({
    "id", "status", "disk_format", "container_format", "size", "virtual_size", "checksum",
    "os_hash_algo", "os_hash_value", "owner", "locations", "direct_url", "created_at",
    "updated_at", "file", "schema", "self", "instance_uuid", "image_type",
})
SNAPSHOT_FORMAT = "vhd"  # what export_raw_vdi gives and xapi imports again
UNFINISHED = ("queued", "saving", "importing", "uploading")


def image_properties(image: Any, instance_uuid: str) -> dict[str, Any]:
    """The new image's fields from the request's ``image``: ``name``
    (required) and string properties; InvalidInput otherwise."""
    if not isinstance(image, dict):
        raise exceptions.InvalidInput("image", "must be an object")
    check_map(image, "image", "snapshot.image", nullable=False)
    name = image.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise exceptions.InvalidInput("image.name", "must be a non-empty string of at most 255")
    check_string(name, "image.name", "name")
    props: dict[str, Any] = {}
    for key, value in image.items():
        field = f"image.{safe_text(key)}"
        check_string(key, "image", "snapshot.image.<key>", label="image keys")
        if key in RESERVED:
            raise exceptions.InvalidInput(field, "is set by the agent")
        if not isinstance(value, str) or len(value) > 255:
            raise exceptions.InvalidInput(field, "must be a string of at most 255")
        check_string(value, field, "snapshot.image.<value>")
        props[key] = value
    props.update({"disk_format": SNAPSHOT_FORMAT, "container_format": "bare",
                  "instance_uuid": instance_uuid, "image_type": "snapshot"})
    return props


class Snapshotter:
    def __init__(self, conf: Any, db: Any, runner: RequestRunner, driver: ComputeDriver):
        self.conf = conf
        self.db = db
        self.runner = runner
        self.driver = driver
        self._glance: GlanceClient | None = None

    @property
    def glance(self) -> GlanceClient:
        if self._glance is None:
            self._glance = GlanceClient.from_conf(self.conf)
        return self._glance

    def accept(self, ctxt: RequestContext, instance_uuid: Any, image: Any) -> dict[str, Any]:
        try:
            uuid = validate_uuid(instance_uuid)
            props = image_properties(image, uuid)
            self.runner.refuse_if_stopping()
            # Refuse what cannot start before an image exists to clean up.
            self.runner.check_can_start(self.db.get_instance(uuid, internal=True), "snapshot")
            image_id = self.glance.create(props)["id"]
        except exceptions.ComputeAgentError as exc:
            self.runner.outcomes.refused(ctxt, None, "snapshot", exc)
            raise
        try:
            self.runner.accept(ctxt, uuid, "snapshot",
                               lambda op, inst: self._run(op, inst, image_id))
        except BaseException:
            self.glance.delete(image_id)
            raise
        LOG.info("Snapshot of %s into image %s accepted", uuid, image_id)
        return {"image_id": image_id}

    def _run(self, op: Operation, inst: dict[str, Any], image_id: str) -> None:
        def upload(chunks: Iterable[bytes]) -> None:
            self.glance.upload(image_id, chunks)

        try:
            self.driver.snapshot(op, inst, upload)
        except BaseException:
            # no half image: a deleted one (Glance may also keep it 'killed')
            self.glance.delete(image_id)
            raise

    def discard_images(self, instance_uuid: str) -> int:
        """Delete the images of the instance's snapshots that never became
        active (an agent crash cut their upload); returns how many."""
        resp = self.glance._request(instance_uuid, "GET", "/v2/images",
                                    params={"instance_uuid": instance_uuid, "limit": 100})
        if resp.status_code != 200:
            raise exceptions.ImageUnavailable(instance_uuid, f"HTTP {resp.status_code}")
        gone = 0
        for image in resp.json().get("images", []):
            if image.get("instance_uuid") == instance_uuid and image.get("status") in UNFINISHED:
                gone += bool(self.glance.delete(image["id"]))
        return gone


def discard_interrupted(driver: ComputeDriver, discard_images: Callable[[str], int] | None,
                        inst: dict[str, Any], op: Operation) -> None:
    """Recovery of an interrupted snapshot: its snapshot VM and disks out of
    dom0, its unfinished image out of Glance. Best effort: a failure is
    logged, and the periodic recovery does not come back to it."""
    uuid = inst["uuid"]
    try:
        driver.discard_snapshots(op, driver_view(inst))
    except exceptions.ComputeAgentError as exc:
        LOG.warning("Could not remove the snapshot of %s from dom0: %s", uuid, exc.message)
    if discard_images is not None:
        try:
            discard_images(uuid)
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Could not delete the unfinished image of %s: %s", uuid, exc.message)
