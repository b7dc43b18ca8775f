"""Configuration for compute-agent.

Importing this package registers every option group of the agent on the
global ``CONF`` object, so any module can ``from compute_agent.conf import
CONF`` and read options without caring about registration order.

Options owned by libraries (oslo.messaging's ``transport_url``, oslo.log's
logging options, oslo.service's ``graceful_shutdown_timeout``) are registered
by those libraries and are not redefined here.
"""

from oslo_config import cfg

from compute_agent.conf import (
    console,
    database,
    default,
    glance,
    image_cache,
    libvirt,
    metrics,
    tasks,
    xenserver,
)

CONF = cfg.CONF

default.register_opts(CONF)
database.register_opts(CONF)
xenserver.register_opts(CONF)
tasks.register_opts(CONF)
libvirt.register_opts(CONF)
console.register_opts(CONF)
metrics.register_opts(CONF)
glance.register_opts(CONF)
image_cache.register_opts(CONF)

__all__ = ["CONF"]
