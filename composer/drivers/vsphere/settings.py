"""A vCenter endpoint's settings, as an administrator gives them (kept as JSON on the
endpoint's row), and the VSphereConfig the driver is made from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from composer.drivers.base import DriverError
from composer.drivers.settings import read_secret, setting
from composer.drivers.vsphere.session import VSphereConfig

CONNECTION, CREDENTIALS, PLACEMENT, LIMITS = "Connection", "Credentials", "Placement", "Limits"


@dataclass(frozen=True)
class VSphereSettings:
    GROUPS: ClassVar[dict[str, str]] = {
        CREDENTIALS: (
            "The password is never stored in the database: the portal reads it from the "
            "environment variable, or, when that is unset, from the file. Set it where the web "
            "server and the workers run."
        ),
        # Places in vCenter: an inventory path as govc shows it (/F0/DC0/host/C1), a path
        # under the datacenter's folder of that kind (Prod/C1, VDI/Pools), or a name.
        PLACEMENT: (
            "Name each place by its inventory path as govc shows it "
            "(/Europe/DC0/host/VDI-Cluster), by a path under the datacenter (VDI/Pools), or by "
            "a name that only one object has."
        ),
    }

    protocol: str = setting(
        "https",
        label="protocol",
        choices=(("https", "HTTPS"), ("http", "HTTP (test simulators only)")),
        group=CONNECTION,
    )
    address: str = setting(
        "",
        label="address",
        help_text="vCenter host name or IP address.",
        required=True,
        group=CONNECTION,
    )
    port: int = setting(443, label="port", min_value=1, max_value=65535, group=CONNECTION)
    verify_tls: bool = setting(
        True,
        label="verify TLS",
        help_text="Check vCenter's certificate. Turn off only in a lab.",
        group=CONNECTION,
    )
    ca_bundle: str = setting(
        "",
        label="CA bundle",
        help_text="PEM file of the CA that signed vCenter's certificate (default: system CAs).",
        group=CONNECTION,
    )
    username: str = setting(
        "",
        label="username",
        help_text="Service account, e.g. svc-vdi@vsphere.local.",
        group=CREDENTIALS,
    )
    password_env: str = setting(
        "",
        label="password variable",
        help_text="Environment variable holding the service account's password.",
        group=CREDENTIALS,
    )
    password_file: str = setting(
        "",
        label="password file",
        help_text="Or a file holding it (used when the variable is unset), e.g. a mounted secret.",
        group=CREDENTIALS,
    )
    datacenter: str = setting(
        "",
        label="datacenter",
        help_text="Datacenter name or inventory path, e.g. /Europe/DC0 (default: the only one).",
        group=PLACEMENT,
    )
    cluster: str = setting(
        "",
        label="cluster",
        help_text="Cluster (or standalone host) the desktops run on: name or path, e.g. "
        "/Europe/DC0/host/VDI-Cluster (default: the only cluster).",
        group=PLACEMENT,
    )
    resource_pool: str = setting(
        "",
        label="resource pool",
        help_text="Resource pool in that cluster: name, path under it (VDI/Desktops) or full "
        "path (default: the cluster's own).",
        group=PLACEMENT,
    )
    esx_host: str = setting(
        "",
        label="host",
        help_text="Put every VM on this host (name or path). Default: DRS places them; with "
        "DRS off the portal spreads them over the cluster's connected hosts.",
        group=PLACEMENT,
    )
    vm_folder: str = setting(
        "vdi-portal",
        label="VM folder",
        help_text="VM folder the portal keeps its replicas and desktops in: a path under the "
        "datacenter's VM folder (VDI/Pools) or a full path (/DC0/vm/VDI/Pools).",
        required=True,
        group=PLACEMENT,
    )
    create_vm_folder: bool = setting(
        True,
        label="create VM folder",
        help_text="Create the VM folder, along its path, when first used (test connection "
        "never creates it). Off: a missing folder is an error.",
        group=PLACEMENT,
    )
    customization_spec: str = setting(
        "",
        label="customization spec",
        help_text="Saved vCenter customization spec (domain join); default: a workgroup spec.",
        group=PLACEMENT,
    )
    task_timeout_seconds: int = setting(
        900,
        label="task timeout (seconds)",
        help_text="How long one hypervisor call may take before the step fails.",
        min_value=1,
        group=LIMITS,
    )

    def summary(self) -> str:
        """Where the endpoint is, in one line (the Hypervisors page, the admin's list)."""
        return f"{self.protocol}://{self.address or '(no address)'}:{self.port}"

    def warnings(self) -> list[str]:
        """What an administrator should know is unsafe or incomplete."""
        out = []
        if self.protocol == "http":
            out.append("plain HTTP, no TLS")
        elif not self.verify_tls:
            out.append("TLS verification off")
        if not (self.password_env or self.password_file):
            out.append("neither a password variable nor a password file is set")
        return out

    def config(self, whose: str) -> VSphereConfig:
        """The driver's configuration, with the password read now (from the variable, else
        the file); DriverError says what is missing."""
        if not self.address:
            raise DriverError(f"{whose} has no vCenter address")
        return VSphereConfig(
            host=self.address,
            port=self.port,
            protocol=self.protocol,
            user=self.username,
            password=read_secret(self.password_env, self.password_file, whose),
            verify_tls=self.verify_tls,
            ca_bundle=self.ca_bundle,
            datacenter=self.datacenter,
            cluster=self.cluster,
            resource_pool=self.resource_pool,
            esx_host=self.esx_host,
            vm_folder=self.vm_folder,
            create_folder=self.create_vm_folder,
            customization_spec=self.customization_spec,
            timeout=float(self.task_timeout_seconds),
        )
