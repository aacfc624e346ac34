"""The vSphere driver on its own: connection errors an administrator can act on, fault
translation, the task journal, and a vCenter session that expired; against govmomi's
simulator where a peer is needed."""

import hashlib
import http.client
import ssl
import tempfile
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from composer.drivers.base import (
    DriverError,
    ImageRef,
    InsufficientSpace,
    InvalidPowerState,
    NotFound,
    Unreachable,
)
from composer.drivers.vsphere import MemoryJournal, VSphereConfig, VSphereDriver, translate
from composer.drivers.vsphere.places import MemoryPlaces
from tests.vsphere import vcsim


def config(sim, **changes):
    values = dict(
        host=sim.host,
        port=sim.port,
        protocol="https" if sim.cert else "http",
        user=vcsim.USER,
        password=vcsim.PASSWORD,
        timeout=30,
    )
    return VSphereConfig(**{**values, **changes})


# -- connection -----------------------------------------------------------------------------


def test_test_connection_says_what_it_found(start_vcsim):
    sim = start_vcsim()
    message = VSphereDriver(config(sim)).test_connection()
    assert message.startswith("Connected to VMware vCenter Server")
    assert message.endswith(
        f"as {vcsim.USER}: datacenter /DC0; cluster /DC0/host/DC0_C0 (DRS places VMs); "
        "2 of 2 datastore(s) mounted there; "
        "folder vdi-portal does not exist yet: created on first use."
    )
    # It created nothing: the folder is made on first use only.
    reader = vcsim.Reader(sim)
    assert reader.content.searchIndex.FindByInventoryPath("DC0/vm/vdi-portal") is None
    reader.close()


def test_wrong_password_and_unreachable_host_are_told_apart(start_vcsim):
    sim = start_vcsim()
    with pytest.raises(DriverError, match="vCenter refused the login: wrong user name or password"):
        VSphereDriver(config(sim, password="wrong")).test_connection()
    sim.stop()
    with pytest.raises(DriverError, match=r"^connect to http://127\.0\.0\.1:\d+: cannot reach"):
        VSphereDriver(config(sim)).test_connection()


def test_tls_is_verified_against_the_ca_bundle(start_vcsim):
    cert = Path(tempfile.mkdtemp()) / "vcsim.pem"
    sim = start_vcsim(tls_cert=str(cert))
    # Verification is on by default: a self-signed vCenter is refused with the reason, and
    # the fingerprint of the certificate it showed, to check before trusting it.
    with pytest.raises(DriverError, match="certificate could not be verified .*CA bundle") as e:
        VSphereDriver(config(sim)).test_connection()
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest().upper()
    assert str(e.value).endswith(
        "the server's certificate: SHA-256 "
        + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    )
    # With its CA bundle, it is trusted.
    assert VSphereDriver(config(sim, ca_bundle=str(cert))).test_connection().startswith("Connected")
    # A lab may switch verification off, explicitly.
    assert VSphereDriver(config(sim, verify_tls=False)).test_connection().startswith("Connected")


def test_an_expired_session_logs_in_again(start_vcsim):
    sim = start_vcsim()
    driver = VSphereDriver(config(sim))
    before = driver.datastores()
    driver.session.content.sessionManager.Logout()  # as vCenter does after 30 idle minutes
    assert driver.datastores() == before


# -- replicas and the task journal --------------------------------------------------------


def test_replica_cannot_be_powered_on_and_a_crashed_clone_is_not_done_twice(start_vcsim):
    sim = start_vcsim()
    reader = vcsim.Reader(sim)
    reader.snapshot_parent(vcsim.PARENT_VM, "v1")
    journal = MemoryJournal()
    driver = VSphereDriver(config(sim), journal)
    replica = driver.clone_replica(ImageRef(vcsim.PARENT_VM, "v1", 4096, 2048), "LocalDS_0", "r1")
    with pytest.raises(Exception, match="template"):
        vcsim.wait(reader.vm_object("r1").PowerOnVM_Task())

    # A worker dies right after vCenter accepted the clone: its id is in the journal.
    crashing = VSphereDriver(config(sim), journal)

    def die(task_id, what):
        raise SystemExit("worker killed")

    crashing.tasks.wait = die
    with pytest.raises(SystemExit):
        crashing.create_linked_clone("VDI-001", replica, "LocalDS_0")
    assert (
        journal.get(
            "clone:VDI-001",
        )
        is not None
    )

    # The retry waits for that task instead of cloning again (vCenter would make a second
    # VM of the same name in this simulator), and the journal is empty afterwards.
    vm = VSphereDriver(config(sim), journal).create_linked_clone("VDI-001", replica, "LocalDS_0")
    assert vm.name == "VDI-001" and vm.kind == "clone" and vm.replica == "r1"
    assert [n for n in reader.folder_vms() if n == "VDI-001"] == ["VDI-001"]
    assert (
        len([c for c in reader.vm_object("VDI-001").parent.childEntity if c.name == "VDI-001"]) == 1
    )
    assert journal.tasks == {}
    # A journaled task vCenter has forgotten (it restarted) does not block the work either.
    journal.put("checkpoint:VDI-001", "task-999999")
    assert driver.checkpoint("VDI-001")
    assert journal.tasks == {}
    reader.close()


def test_steps_refuse_what_is_not_there(start_vcsim):
    sim = start_vcsim()
    driver = VSphereDriver(config(sim))
    with pytest.raises(NotFound, match="parent VM nope of the image not found"):
        driver.clone_replica(ImageRef("nope", "v1", 1, 1), "LocalDS_0", "r1")
    with pytest.raises(NotFound, match="snapshot v9 of DC0_C0_RP0_VM0 not found"):
        driver.clone_replica(ImageRef(vcsim.PARENT_VM, "v9", 1, 1), "LocalDS_0", "r1")
    with pytest.raises(NotFound, match="VM GONE-1 not found"):
        driver.power_on("GONE-1")
    driver.delete_vm("GONE-1")  # missing is not an error for delete
    with pytest.raises(DriverError, match="vCenter has no API for user sessions"):
        driver.log_off("GONE-1")


# -- fault translation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, kind, text",
    [
        (vim.fault.DuplicateName(name="VDI-001"), DriverError, "the name VDI-001 is already taken"),
        (
            vim.fault.InvalidPowerState(existingState="poweredOn"),
            InvalidPowerState,
            "the VM is powered on and this step cannot work on it that way",
        ),
        (
            vmodl.fault.ManagedObjectNotFound(),
            NotFound,
            "no longer exists in vCenter (deleted outside the portal?)",
        ),
        (
            vim.fault.InsufficientResourcesFault(msg="memory"),
            DriverError,
            "not enough CPU or memory to admit it (memory)",
        ),
        (vim.fault.NoDiskSpace(msg="full"), InsufficientSpace, "not enough space on the datastore"),
        (
            vim.fault.NoPermission(privilegeId="VirtualMachine.Provisioning.Clone"),
            DriverError,
            "lacks the privilege VirtualMachine.Provisioning.Clone",
        ),
        # Transport failures: the composer waits and tries again (Unreachable).
        (TimeoutError("timed out"), Unreachable, "vCenter did not answer in time"),
        (ConnectionRefusedError(111, "Connection refused"), Unreachable, "cannot reach vCenter"),
        (
            http.client.RemoteDisconnected("Remote end closed connection"),
            Unreachable,
            "vCenter broke off the answer (RemoteDisconnected",
        ),
        (
            http.client.HTTPException("503 Service Unavailable"),
            Unreachable,
            "vCenter broke off the answer (HTTPException: 503 Service Unavailable)",
        ),
        (
            ssl.SSLCertVerificationError(1, "self-signed"),
            DriverError,
            "certificate could not be verified",
        ),
        (vim.fault.InvalidLogin(), DriverError, "wrong user name or password"),
    ],
)
def test_faults_become_driver_errors_an_administrator_understands(fault, kind, text):
    error = translate(fault, "clone VDI-001")
    assert type(error) is kind
    assert str(error).startswith("clone VDI-001: ")
    assert text in str(error)


class DictJar:
    """A cookie jar in memory (the portal's is in Redis, composer/vsphere_sessions.py)."""

    def __init__(self):
        self.kept = None

    def get(self):
        return self.kept

    def put(self, cookie, version):
        self.kept = {"cookie": cookie, "version": version}

    def touch(self):
        pass

    def drop(self):
        self.kept = None


def test_a_worker_s_jobs_share_one_session_and_log_in_again_when_it_ended(start_vcsim):
    sim = start_vcsim()
    reader = vcsim.Reader(sim)
    sessions = reader.content.sessionManager

    def ours():
        return [s.key for s in sessions.sessionList if s.key != sessions.currentSession.key]

    jar = DictJar()
    first = VSphereDriver(config(sim), jar=jar)
    expected = first.datastores()
    first.close()  # a job ends: the session stays for the next one
    assert jar.kept and len(ours()) == 1
    second = VSphereDriver(config(sim), jar=jar)
    assert second.datastores() == expected
    second.close()
    assert len(ours()) == 1  # resumed, not a second login

    sessions.TerminateSession(ours())  # vCenter ended it (idle timeout, restart)
    third = VSphereDriver(config(sim), jar=jar)
    assert third.datastores() == expected  # logged in again, transparently
    assert len(ours()) == 1 and jar.kept
    third.session.log_out()  # the worker stops
    assert ours() == [] and jar.kept is None
    reader.close()


def test_places_are_found_once_then_used_by_id_and_looked_up_again_when_gone(start_vcsim):
    sim = start_vcsim()
    reader = vcsim.Reader(sim)
    reader.snapshot_parent(vcsim.PARENT_VM, "v1")
    places = MemoryPlaces()
    image = ImageRef(vcsim.PARENT_VM, "v1", 1, 1)
    first = VSphereDriver(config(sim), places=places)
    first.clone_replica(image, "LocalDS_0", "r1")
    stored = places.get()
    assert stored["dc"]["path"] == "/DC0" and stored["folder"][0] == "Folder"
    assert stored["placement"]["description"] == "cluster /DC0/host/DC0_C0 (DRS places VMs)"
    folder_id = reader.find("vm/vdi-portal")._moId
    assert stored["folder"] == ["Folder", folder_id]

    # The next job starts from the ids: one round trip checks them, no lookup by name.
    second = VSphereDriver(config(sim), places=places)
    second.clone_replica(image, "LocalDS_0", "r1")  # finds it done
    looked_up = VSphereDriver(config(sim))
    looked_up.clone_replica(image, "LocalDS_0", "r1")
    assert second.round_trips * 2 <= looked_up.round_trips, (
        second.round_trips,
        looked_up.round_trips,
    )

    # Someone moves the portal's VMs to a new folder of the same name: found again by name.
    vcsim.wait(reader.vm_object("r1").Destroy_Task())
    vcsim.wait(reader.find("vm/vdi-portal").Destroy_Task())
    reader.make_folder("vdi-portal")
    third = VSphereDriver(config(sim), places=places)
    third.clone_replica(image, "LocalDS_0", "r2")
    assert (
        places.get()["folder"]
        == ["Folder", reader.find("vm/vdi-portal")._moId]
        != [
            "Folder",
            folder_id,
        ]
    )
    assert [vm.name for vm in reader.find("vm/vdi-portal").childEntity] == ["r2"]

    # Other settings, other places: not taken from the store.
    fourth = VSphereDriver(config(sim, vm_folder="Elsewhere"), places=places)
    fourth.clone_replica(image, "LocalDS_0", "r3")
    assert reader.find("vm/Elsewhere/r3") is not None
    reader.close()
