"""Options of the [image_cache] group: the per-SR cache of image base VDIs."""

from oslo_config import cfg

image_cache_group = cfg.OptGroup(
    "image_cache",
    title="Image cache options",
    help="Each SR keeps one base VDI per image (imported once, checksum verified) "
    "that instance root disks are cloned from.",
)

IMAGE_CACHE_OPTS = [
    cfg.BoolOpt(
        "enabled",
        default=True,
        help="Keep imported images as cached base VDIs and clone root disks from "
        "them. Off: every build downloads and imports its image.",
    ),
    cfg.IntOpt(
        "max_unused_age",
        default=86400,
        min=0,
        help="Seconds a cached image VDI may stay unused (no instance disk cloned from "
        "it, no build using it) before the periodic clean-up removes it.",
    ),
    cfg.IntOpt(
        "cleanup_interval",
        default=600,
        min=0,
        help="Seconds between two runs of the cache clean-up; 0 disables it.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(image_cache_group)
    conf.register_opts(IMAGE_CACHE_OPTS, group=image_cache_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {image_cache_group: IMAGE_CACHE_OPTS}
