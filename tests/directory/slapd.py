"""A real OpenLDAP server for the directory sign-in tests: Debian's slapd, on a loopback port,
with a generated configuration and directory in a temporary folder, run as the current user.

The directory (see DIRECTORY below):
- people in two OUs (ou=people and ou=contractors), found by one subtree search;
- the three role groups, one holding a nested group (cn=operators) instead of a person;
- a person in no role group, a person locked by the ppolicy overlay (slapd refuses the bind),
  and the service account the portal binds as to search.

It listens on ldap:// (StartTLS offered) and ldaps://, with a certificate for 127.0.0.1 from
a throwaway CA (`ca_file`); `other_ca_file` is a CA that did not sign it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLAPD = os.environ.get("SLAPD", "/usr/sbin/slapd")
SLAPADD = os.environ.get("SLAPADD", "/usr/sbin/slapadd")
LDAPMODIFY = shutil.which("ldapmodify") or "/usr/bin/ldapmodify"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
# This project's loopback ports for test servers (one free port is taken from it).
PORTS = range(21000, 21100)

BASE = "dc=example,dc=test"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=portal,ou=services,{BASE}"
SERVICE_PASSWORD = "service-secret"
GROUPS = f"ou=groups,{BASE}"
ADMINISTRATORS_DN = f"cn=portal-admins,{GROUPS}"
HELPDESK_DN = f"cn=portal-helpdesk,{GROUPS}"
AUDITORS_DN = f"cn=portal-auditors,{GROUPS}"
OPERATORS_DN = f"cn=operators,{GROUPS}"  # nested in portal-helpdesk
PASSWORD = "directory-pass-1"  # every person's password

# uid -> OU; every person's DN is uid=<uid>,ou=<ou>,dc=example,dc=test.
PEOPLE = {
    "alice": "people",  # Administrators
    "harry": "people",  # Helpdesk
    "carl": "contractors",  # Auditors, in the other OU
    "nina": "people",  # Helpdesk only through cn=operators
    "mover": "contractors",  # Helpdesk; tests move and remove them
    "nobody": "people",  # in no role group
    "dora": "people",  # Administrators, but locked by ppolicy
    "carol": "people",  # Administrators; a local account of the same name exists in a test
}
MEMBERS = {
    ADMINISTRATORS_DN: ["alice", "dora", "carol"],
    HELPDESK_DN: ["harry", "mover", OPERATORS_DN],
    AUDITORS_DN: ["carl"],
    OPERATORS_DN: ["nina"],
}
LOCKED = {"dora"}


def person_dn(uid: str) -> str:
    return f"uid={uid},ou={PEOPLE[uid]},{BASE}"


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _entry(dn: str, *lines: str) -> str:
    return "\n".join([f"dn: {dn}", *lines]) + "\n"


def directory_ldif() -> str:
    entries = [
        _entry(
            BASE, "objectClass: dcObject", "objectClass: organization", "o: Example", "dc: example"
        ),
    ]
    for ou in ("people", "contractors", "groups", "services", "policies"):
        entries.append(_entry(f"ou={ou},{BASE}", "objectClass: organizationalUnit", f"ou: {ou}"))
    entries.append(
        _entry(
            f"cn=default,ou=policies,{BASE}",
            "objectClass: organizationalRole",
            "objectClass: pwdPolicy",
            "cn: default",
            "pwdAttribute: userPassword",
            "pwdLockout: TRUE",
        )
    )
    entries.append(
        _entry(
            SERVICE_DN,
            "objectClass: organizationalRole",
            "objectClass: simpleSecurityObject",
            "cn: portal",
            f"userPassword: {ssha(SERVICE_PASSWORD)}",
        )
    )
    for uid in PEOPLE:
        lines = [
            "objectClass: inetOrgPerson",
            f"uid: {uid}",
            f"cn: {uid.title()} Example",
            f"givenName: {uid.title()}",
            "sn: Example",
            f"mail: {uid}@example.test",
            f"userPassword: {ssha(PASSWORD)}",
        ]
        if uid in LOCKED:
            # Locked for good: slapd's ppolicy refuses every bind (invalidCredentials).
            lines.append("pwdAccountLockedTime: 000001010000Z")
        entries.append(_entry(person_dn(uid), *lines))
    for group, members in MEMBERS.items():
        cn = group.split(",")[0].removeprefix("cn=")
        member_dns = [m if "=" in m else person_dn(m) for m in members]
        entries.append(
            _entry(
                group,
                "objectClass: groupOfNames",
                f"cn: {cn}",
                *(f"member: {dn}" for dn in member_dns),
            )
        )
    return "\n".join(entries)


def slapd_conf(folder: Path) -> str:
    schemas = ["core", "cosine", "inetorgperson", "nis"]
    return "\n".join(
        [
            *(f"include {SCHEMA_DIR / name}.schema" for name in schemas),
            f"TLSCACertificateFile {folder / 'ca.pem'}",
            f"TLSCertificateFile {folder / 'server.pem'}",
            f"TLSCertificateKeyFile {folder / 'server.key'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            "moduleload ppolicy",
            f"pidfile {folder / 'slapd.pid'}",
            f"argsfile {folder / 'slapd.args'}",
            "database mdb",
            f'suffix "{BASE}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PASSWORD}",
            f"directory {folder / 'db'}",
            "maxsize 16777216",
            "overlay ppolicy",
            f'ppolicy_default "cn=default,ou=policies,{BASE}"',
            # People may only bind; the service account reads everything; no anonymous search.
            "access to attrs=userPassword by anonymous auth by * none",
            f'access to * by dn.exact="{SERVICE_DN}" read by * none',
            "",
        ]
    )


def make_certificates(folder: Path) -> None:
    """ca.pem signs server.pem (for 127.0.0.1); other-ca.pem signs nothing here."""

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-days",
            "2",
            "-subj",
            f"/CN=Portal tests {ca}",
        )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )


def free_port(exclude: tuple[int, ...] = ()) -> int:
    for port in PORTS:
        if port in exclude:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


class Slapd:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.tls_port = free_port(exclude=(self.port,))
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.tls_port}"
        self.ca_file = folder / "ca.pem"
        self.other_ca_file = folder / "other-ca.pem"
        self.process: subprocess.Popen | None = None
        (folder / "db").mkdir(parents=True)
        make_certificates(folder)
        self.conf = folder / "slapd.conf"
        self.conf.write_text(slapd_conf(folder))
        ldif = folder / "directory.ldif"
        ldif.write_text(directory_ldif())
        subprocess.run(
            [SLAPADD, "-f", str(self.conf), "-l", str(ldif)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(self.conf), "-h", f"{self.uri}/ {self.ldaps_uri}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.process.stderr.read().decode()}")
            try:
                for port in (self.port, self.tls_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not start listening within 30 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # slapd's clean shutdown
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        self.process = None

    def modify(self, ldif: str) -> None:
        """ldapmodify as the directory's root, as an administrator would."""
        subprocess.run(
            [LDAPMODIFY, "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )

    def move_member(self, uid: str, source: str | None, target: str | None) -> None:
        changes = []
        if source:
            changes.append(
                f"dn: {source}\nchangetype: modify\ndelete: member\nmember: {person_dn(uid)}\n"
            )
        if target:
            changes.append(
                f"dn: {target}\nchangetype: modify\nadd: member\nmember: {person_dn(uid)}\n"
            )
        self.modify("\n".join(changes))
