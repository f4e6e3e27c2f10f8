"""The script Kamailio's app_python3 loads (modparam "load"): the handler is in callthrottle.

callthrottle must be importable by the Python that Kamailio embeds (install it for that Python,
or put it on PYTHONPATH in Kamailio's environment). Settings: CALLTHROTTLE_* environment
variables (see callthrottle.integrations.kamailio.Settings).
"""

from callthrottle.integrations.kamailio import mod_init

__all__ = ("mod_init",)
