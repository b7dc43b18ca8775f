"""Modules a dom0 plugin imports (``XenAPIPlugin``), put on the plugin's
``sys.path`` by xapisim.plugins. The official ``XenAPI`` SDK comes from the
simulator's own environment."""
