"""Hypervisor drivers behind one interface (base.py), registered by name (registry.py), each
with the settings its endpoints take (settings.py).

Nothing here knows Django or the portal's models (an import-linter contract in make lint):
the portal builds a driver from an endpoint's row in composer/endpoint_drivers.py.
"""
