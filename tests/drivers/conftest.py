"""The vCenter simulator's fixtures, for the vSphere side of the contract tests."""

from tests.vsphere.conftest import start_vcsim, vcsim_binary  # noqa: F401 (fixtures)
