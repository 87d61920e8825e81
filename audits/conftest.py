"""kijun audits: testinfra checks of a host's state against the values its roles applied.

The fixtures (``snapshot``, ``expected``, ``audit``), the control marker and the checks'
consistency with the catalog live in the plugin :mod:`kijun.audit_plugin`; read its docstring.

Run: ``pytest audits --hosts=ansible://all --ansible-inventory=inventories/lab`` or
``kijun audit``.
"""

from kijun.audit_plugin import *  # noqa: F403 - the plugin's hooks and fixtures
