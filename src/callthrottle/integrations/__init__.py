"""Glue between callthrottle and the programs that place calls.

- :mod:`callthrottle.integrations.kamailio`: the handler Kamailio's ``app_python3`` module loads,
  so that an outbound SIP proxy asks for a slot on each new call and gives it back when the call
  ends (``examples/kamailio/kamailio.cfg`` is the routing script that goes with it).
"""
