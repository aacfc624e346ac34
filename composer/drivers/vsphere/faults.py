"""vSphere faults and connection failures as driver errors an administrator can act on."""

from __future__ import annotations

import http.client
import socket
import ssl

from pyVmomi import vim, vmodl

from composer.drivers.base import (
    DriverError,
    InsufficientSpace,
    InvalidPowerState,
    NotFound,
    Unreachable,
)

POWER_WORDS = {"poweredOn": "powered on", "poweredOff": "powered off", "suspended": "suspended"}


def translate(exc: BaseException, what: str) -> DriverError:
    """A vSphere fault or connection failure as a driver error an administrator understands.

    `what` names the call, e.g. "clone VDI-001".
    """
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, vim.fault.DuplicateName):
        return DriverError(f"{what}: the name {exc.name or ''} is already taken in vCenter")
    if isinstance(exc, vim.fault.InvalidPowerState):
        state = POWER_WORDS.get(exc.existingState or "", "in a power state")
        return InvalidPowerState(
            f"{what}: the VM is {state} and this step cannot work on it that way "
            "(was it powered on or off outside the portal?)"
        )
    if isinstance(exc, vmodl.fault.ManagedObjectNotFound):
        return NotFound(
            f"{what}: the object no longer exists in vCenter (deleted outside the portal?)"
        )
    if isinstance(exc, vim.fault.FileNotFound):
        return NotFound(f"{what}: file {exc.file or ''} not found on the datastore")
    if isinstance(exc, vim.fault.NoDiskSpace | vim.fault.InsufficientDisks):
        return InsufficientSpace(f"{what}: not enough space on the datastore ({exc.msg})")
    if isinstance(exc, vim.fault.InsufficientResourcesFault):
        return DriverError(
            f"{what}: vCenter has not enough CPU or memory to admit it "
            f"({exc.msg or 'insufficient resources'})"
        )
    if isinstance(exc, vim.fault.NoPermission):
        return DriverError(
            f"{what}: the service account lacks the privilege {exc.privilegeId or '(unknown)'}"
            " in vCenter; see README, 'Pointing the portal at vCenter'"
        )
    if isinstance(exc, vim.fault.InvalidLogin):
        return DriverError(f"{what}: vCenter refused the login: wrong user name or password")
    if isinstance(exc, vim.fault.NotAuthenticated):
        return DriverError(f"{what}: the vCenter session expired; the next try logs in again")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or exc
        return DriverError(
            f"{what}: vCenter's certificate could not be verified ({reason}); "
            "set the endpoint's CA bundle to the CA that signed it"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return Unreachable(f"{what}: vCenter did not answer in time")
    if isinstance(exc, ssl.SSLError):
        return DriverError(f"{what}: TLS failed talking to vCenter ({exc.reason or exc})")
    if isinstance(exc, socket.gaierror):
        return DriverError(f"{what}: cannot resolve vCenter's host name ({exc.strerror or exc})")
    if isinstance(exc, http.client.HTTPException):
        # RemoteDisconnected, a 503 while vCenter's services restart, a truncated answer.
        return Unreachable(f"{what}: vCenter broke off the answer ({type(exc).__name__}: {exc})")
    if isinstance(exc, ConnectionError | OSError):
        return Unreachable(f"{what}: cannot reach vCenter ({exc.strerror or exc})")
    if isinstance(exc, vmodl.MethodFault):
        kind = type(exc).__name__.rpartition(".")[2]
        return DriverError(f"{what}: vCenter reported {kind}: {exc.msg or ''}".rstrip(": "))
    return DriverError(f"{what}: {type(exc).__name__}: {exc}")
