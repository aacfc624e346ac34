"""One logged-in vCenter session: connecting, calling the API, reading properties.

Every API call goes through `Session.call`, which turns faults into driver errors and logs in
again once when vCenter ended an idle session; property reads go through `retrieve`, one
PropertyCollector round trip per page of results.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl
from pyVmomi.SoapAdapter import SoapStubAdapter

from composer.drivers.base import DriverError, NotFound
from composer.drivers.vsphere.faults import translate

log = logging.getLogger(__name__)

CALL_TIMEOUT = 60.0  # seconds one API call may take (a task may take the endpoint's timeout)
PC = vmodl.query.PropertyCollector


@dataclass(frozen=True)
class VSphereConfig:
    """Where and how to reach one vCenter, and where the portal works in it (built from a
    HypervisorEndpoint row).

    Inventory places are inventory paths as govc shows them (`/F0/DC0/host/C1`) or, where
    unambiguous, names; a relative path is taken under the datacenter's folder of that kind
    (`VDI/Pools` for a VM folder, `Prod/C1` for a cluster). See lookup.py.
    """

    host: str
    user: str
    password: str
    port: int = 443
    protocol: str = "https"
    verify_tls: bool = True
    ca_bundle: str = ""
    datacenter: str = ""
    cluster: str = ""
    resource_pool: str = ""
    esx_host: str = ""
    vm_folder: str = "vdi-portal"
    create_folder: bool = True  # create the VM folder (along its path) on first use
    customization_spec: str = ""
    timeout: float = 900.0

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


class CookieJar(Protocol):
    """Where a session's cookie is kept between the jobs of one worker
    (composer/vsphere_sessions.py)."""

    def get(self) -> dict | None: ...

    def put(self, cookie: str, version: str) -> None: ...

    def touch(self) -> None: ...

    def drop(self) -> None: ...


class Session:
    """A vCenter session, opened on first use and reused until closed.

    With a cookie jar, the session outlives the process: a new one resumes it from the
    jar's cookie instead of logging in, and closing only lets go of it (log_out ends it).
    """

    def __init__(self, config: VSphereConfig, jar: CookieJar | None = None) -> None:
        self.config = config
        self.jar = jar
        self._si = None
        self._content = None
        self.round_trips = 0  # API calls made through call() and retrieve() (bench/)
        self.generation = 0  # counts sessions closed: objects found before belong to one

    # -- connection ------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.protocol != "https":
            return None
        if not self.config.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.config.ca_bundle or None)

    def _resume(self):
        """A ServiceInstance on the session the jar holds, without a round trip: if vCenter
        has ended it, the first call is refused and call() logs in again."""
        kept = self.jar.get() if self.jar is not None else None
        if not kept:
            return None
        stub = SoapStubAdapter(
            url=f"{self.config.protocol}://{self.config.host}:{self.config.port}/sdk",
            version=kept["version"],
            sslContext=self._ssl_context(),
            httpConnectionTimeout=min(self.config.timeout, CALL_TIMEOUT),
        )
        stub.cookie = kept["cookie"]
        self.jar.touch()
        return vim.ServiceInstance("ServiceInstance", stub)

    def _keep(self) -> None:
        if self.jar is not None and self._si is not None and self._si._stub.cookie:
            self.jar.put(self._si._stub.cookie, self._si._stub.version)

    def connect(self):
        if self._si is None:
            self._si = self._resume()
        if self._si is None:
            try:
                self._si = SmartConnect(
                    protocol=self.config.protocol,
                    host=self.config.host,
                    port=self.config.port,
                    user=self.config.user,
                    pwd=self.config.password,
                    sslContext=self._ssl_context(),
                    disableSslCertValidation=not self.config.verify_tls,
                    # One API call answers quickly (tasks run on after it returns, and are
                    # awaited up to the task timeout), so a silent vCenter is noticed soon.
                    httpConnectionTimeout=min(self.config.timeout, CALL_TIMEOUT),
                )
            except Exception as exc:
                raise translate(exc, f"connect to {self.config.where}") from exc
            self._keep()
        return self._si

    @property
    def connected(self) -> bool:
        return self._si is not None

    def close(self) -> None:
        """End this process's use of the session: logged out, unless a jar keeps it for the
        worker's next job."""
        if self.jar is None:
            self.log_out()
        elif self._si is not None:
            self._si, self._content = None, None
            self.generation += 1

    def log_out(self) -> None:
        si = self._si or self._resume()
        if si is not None:
            try:
                Disconnect(si)
            except Exception:  # the session may already be gone; nothing to clean up then
                pass
            self.generation += 1
        if self.jar is not None:
            self.jar.drop()
        self._si, self._content = None, None

    def forget(self) -> None:
        """Drop the connection (a timeout, a reset) without a call to vCenter, which may not
        answer: the next call connects again, resuming the session if it is still alive."""
        if self._si is not None:
            self.generation += 1
        self._si, self._content = None, None

    @property
    def content(self):
        if self._content is None:
            si = self.connect()
            self.round_trips += 1
            try:
                self._content = si.RetrieveContent()
            except Exception as exc:  # a silent vCenter is Unreachable, like any call
                raise translate(exc, f"connect to {self.config.where}") from exc
        return self._content

    def stub(self):
        return self.connect()._stub

    def fingerprint(self) -> str:
        """SHA-256 of the certificate the server shows, to check before trusting its CA."""
        try:
            pem = ssl.get_server_certificate((self.config.host, self.config.port), timeout=10)
        except OSError as exc:
            return f"not readable ({exc})"
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
        return "SHA-256 " + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    # -- calls -----------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one API call, translating faults.

        vCenter ends sessions idle for 30 minutes, and a kept-alive connection may have been
        closed at the other end: both are refused before anything happens, so the call is
        retried once after logging in again on the same connection (objects already looked
        up stay valid). A timeout is not retried: the call may be under way.
        """
        for attempt in (1, 2):
            try:
                self.round_trips += 1
                return fn()
            except DriverError:
                raise
            except (vim.fault.NotAuthenticated, ConnectionResetError, BrokenPipeError) as exc:
                if attempt == 2 or self._si is None:
                    self.forget()
                    raise translate(exc, what) from exc
                log.info("%s: %s; logging in again", what, type(exc).__name__)
                try:
                    self.content.sessionManager.Login(
                        userName=self.config.user, password=self.config.password
                    )
                except vim.fault.InvalidLogin as login:
                    raise translate(login, what) from login
                except Exception:  # the connection itself is gone: start afresh next time
                    self.forget()
                    raise translate(exc, what) from exc
                self._keep()
            except TimeoutError as exc:
                self.forget()  # the answer may still arrive on this socket: do not reuse it
                raise translate(exc, what) from exc
            except Exception as exc:
                raise translate(exc, what) from exc
        raise AssertionError("unreachable")

    def retrieve(self, spec, what: str = "read vCenter inventory") -> list[dict]:
        """Every object the filter spec selects, as {property path: value, "obj": object};
        one round trip per page (vCenter pages large results)."""

        def read():
            collector = self.content.propertyCollector
            rows = []
            result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
            while result:
                for item in result.objects:
                    row = {p.name: p.val for p in item.propSet or []}
                    row["obj"] = item.obj
                    rows.append(row)
                if not result.token:
                    break
                self.round_trips += 1
                result = collector.ContinueRetrievePropertiesEx(token=result.token)
            return rows

        return self.call(what, read)

    def read(self, obj, paths: list[str], what: str = "read vCenter inventory") -> dict:
        """Properties of one object; NotFound-translated when it is gone."""
        rows = self.retrieve(filter_spec(type(obj), paths, obj=obj), what)
        if not rows:
            raise NotFound(f"{what}: the object no longer exists in vCenter")
        return rows[0]

    def read_all(self, container, obj_type, paths: list[str], recursive: bool = True, what=""):
        """Properties of every `obj_type` under `container`, in one retrieval over a
        ContainerView (plus the view's creation and removal)."""
        view = self.call(
            what or "list inventory",
            lambda: self.content.viewManager.CreateContainerView(container, [obj_type], recursive),
        )
        try:
            return self.retrieve(filter_spec(obj_type, paths, view), what or "list inventory")
        finally:
            try:
                self.call("close inventory view", view.Destroy)
            except DriverError:
                pass  # views die with the session anyway


def filter_spec(obj_type, path_set: list[str], container=None, *, obj=None):
    """A property-collector filter: `path_set` of one object, or of every `obj_type` in a view."""
    if obj is not None:
        object_set = [PC.ObjectSpec(obj=obj)]
    else:
        object_set = [
            PC.ObjectSpec(
                obj=container,
                skip=True,
                selectSet=[
                    PC.TraversalSpec(
                        name="view", path="view", skip=False, type=vim.view.ContainerView
                    )
                ],
            )
        ]
    return PC.FilterSpec(
        objectSet=object_set, propSet=[PC.PropertySpec(type=obj_type, pathSet=path_set)]
    )
