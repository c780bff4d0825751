"""A throwaway Kerberos realm on loopback: MIT's KDC, its database and keytabs in one folder.

The simulated hosts of a Kerberos fleet need what an Active Directory domain gives Windows: a
KDC that issues tickets, a service principal ``HTTP/<host>`` per host whose key sits in that
host's keytab, and a user principal for the collector. ``Realm`` builds all of it from Debian's
``krb5-kdc`` and ``krb5-admin-server`` packages (``kdb5_util``, ``kadmin.local``, ``krb5kdc``)
in a folder of its own, with its own ``krb5.conf``; nothing outside the folder is read or written,
and the KDC listens on 127.0.0.1 only. Its ``environment()`` is what a process needs to use the
realm (``KRB5_CONFIG``): the tests and the collection benchmark set it around a run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

INSTALL = "apt-get install krb5-kdc krb5-admin-server krb5-user libkrb5-dev"
_TOOLS = ("kdb5_util", "kadmin.local", "krb5kdc", "kinit")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
DOMAIN = "portfleet.test"  # the simulated hosts' DNS domain (RFC 2606 reserves .test)


class RealmUnavailable(RuntimeError):
    """MIT Kerberos's KDC tools are not installed here."""


def find_tool(name: str) -> str | None:
    """Return the path of an MIT Kerberos tool (the server ones live in sbin), if installed."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=search)


def missing_tools() -> list[str]:
    """Return the MIT Kerberos tools a realm needs that are not installed."""
    return [name for name in _TOOLS if find_tool(name) is None]


class Realm:
    """A running KDC for ``name`` on loopback, with principals and keytabs on demand."""

    def __init__(self, workdir: Path, name: str = "PORTFLEET.TEST") -> None:
        """Prepare (not start) a realm whose every file lives under ``workdir``."""
        self.name = name
        self.dir = workdir
        self.port = 0
        self._kdc: subprocess.Popen[bytes] | None = None
        self.krb5_conf = workdir / "krb5.conf"
        self._kdc_conf = workdir / "kdc.conf"

    def __getstate__(self) -> dict[str, object]:
        """Travel to a child process without the KDC, which stays this process's to stop."""
        return {**self.__dict__, "_kdc": None}

    def __enter__(self) -> Realm:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """Return the variables that point MIT Kerberos (and so GSSAPI) at this realm."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self._kdc_conf)}

    def start(self) -> Realm:
        """Create the database and start the KDC; RealmUnavailable when MIT's tools are absent."""
        missing = missing_tools()
        if missing:
            raise RealmUnavailable(
                f"MIT Kerberos is not installed ({', '.join(missing)} missing): {INSTALL}"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._write_config()
        self._run("kdb5_util", "create", "-s", "-r", self.name, "-P", secrets.token_hex(16))
        log = (self.dir / "kdc.log").open("ab")
        self._kdc = subprocess.Popen(
            [str(find_tool("krb5kdc")), "-n", "-r", self.name],
            env={**os.environ, **self.environment()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_listening()
        return self

    def stop(self) -> None:
        """Stop the KDC (the folder stays for whoever made it)."""
        kdc, self._kdc = self._kdc, None
        if kdc is None:
            return
        kdc.terminate()
        try:
            kdc.wait(5)
        except subprocess.TimeoutExpired:
            kdc.kill()
            kdc.wait()

    def add_principal(self, principal: str, password: str | None = None) -> str:
        """Create ``principal`` (a random key unless ``password``); return its full name.

        A user (one with a password) must pre-authenticate, as Active Directory requires.
        """
        full = self.qualify(principal)
        secret = ["+requires_preauth", "-pw", password] if password is not None else ["-randkey"]
        self._kadmin("addprinc", *secret, full)
        return full

    def set_user(self, principal: str, password: str) -> str:
        """Create user ``principal`` with ``password``, or give the existing one that password."""
        full = self.qualify(principal)
        try:
            self.add_principal(full, password)
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise
            self._kadmin("cpw", "-pw", password, full)
        return full

    def add_service(self, host: str, service: str = "HTTP") -> str:
        """Register the service principal ``service/host`` as a domain join does (once)."""
        full = self.qualify(f"{service}/{host}")
        try:
            self.add_principal(full)
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise
        return full

    def export_keytab(self, principal: str, keytab: Path) -> Path:
        """Add the principal's current keys to ``keytab`` (created if absent); return it."""
        self._kadmin("ktadd", "-k", str(keytab), "-norandkey", self.qualify(principal))
        keytab.chmod(0o600)
        return keytab

    def rekey(self, principal: str) -> None:
        """Give ``principal`` a new random key, as a second machine joined under its name does."""
        self._kadmin("cpw", "-randkey", self.qualify(principal))

    def kinit(
        self,
        principal: str,
        ccache: Path,
        *,
        keytab: Path | None = None,
        password: str | None = None,
        lifetime: str | None = None,
    ) -> Path:
        """Get a ticket-granting ticket for ``principal`` into ``ccache`` (FILE); return it."""
        command = [str(find_tool("kinit")), "-c", f"FILE:{ccache}"]
        if lifetime is not None:
            command += ["-l", lifetime]
        if keytab is not None:
            command += ["-k", "-t", str(keytab)]
        command.append(self.qualify(principal))
        subprocess.run(
            command,
            input=(password + "\n").encode() if password is not None else None,
            env={**os.environ, **self.environment()},
            check=True,
            capture_output=True,
            timeout=30,
        )
        return ccache

    def qualify(self, principal: str) -> str:
        """Return ``principal`` with this realm's name unless it carries one."""
        return principal if "@" in principal else f"{principal}@{self.name}"

    def _kadmin(self, *query: str) -> None:
        out = self._run("kadmin.local", "-r", self.name, "-q", " ".join(_quoted(q) for q in query))
        # kadmin.local exits 0 whatever its query did; a failure reads "<what> while <doing>".
        for line in out.splitlines():
            if " while " in line or "error" in line.lower():
                raise RuntimeError(f"kadmin.local {query[0]}: {line.strip()}")

    def _run(self, tool: str, *arguments: str) -> str:
        done = subprocess.run(
            [str(find_tool(tool)), *arguments],
            env={**os.environ, **self.environment()},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout + done.stderr

    def _write_config(self) -> None:
        # No DNS anywhere: the KDC is named by address, and host names are taken as written
        # (no canonicalisation, no reverse lookup) as a collector with a static krb5.conf does.
        self.krb5_conf.write_text(
            "[libdefaults]\n"
            f"  default_realm = {self.name}\n"
            "  dns_lookup_kdc = false\n"
            "  dns_lookup_realm = false\n"
            "  dns_canonicalize_hostname = false\n"
            "  rdns = false\n"
            "  udp_preference_limit = 1\n"
            "  ticket_lifetime = 10h\n"
            f"  default_ccache_name = FILE:{self.dir / 'default.ccache'}\n"
            f"  default_keytab_name = FILE:{self.dir / 'default.keytab'}\n"
            f"  default_client_keytab_name = FILE:{self.dir / 'client.keytab'}\n"
            "[realms]\n"
            f"  {self.name} = {{\n"
            f"    kdc = 127.0.0.1:{self.port}\n"
            "  }\n"
            "[domain_realm]\n"
            f"  .{DOMAIN} = {self.name}\n"
            f"  {DOMAIN} = {self.name}\n",
            encoding="utf-8",
        )
        self._kdc_conf.write_text(
            "[kdcdefaults]\n"
            f"  kdc_listen = 127.0.0.1:{self.port}\n"
            f"  kdc_tcp_listen = 127.0.0.1:{self.port}\n"
            "[realms]\n"
            f"  {self.name} = {{\n"
            f"    database_name = {self.dir / 'principal'}\n"
            f"    key_stash_file = {self.dir / 'stash'}\n"
            f"    acl_file = {self.dir / 'kadm5.acl'}\n"
            "    max_life = 10h\n"
            "    max_renewable_life = 1d\n"
            "    supported_enctypes = aes256-cts-hmac-sha1-96:normal"
            " aes128-cts-hmac-sha1-96:normal\n"
            "  }\n"
            "[logging]\n"
            f"  kdc = FILE:{self.dir / 'kdc.log'}\n",
            encoding="utf-8",
        )

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._kdc is not None and self._kdc.poll() is not None:
                log = (self.dir / "kdc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"krb5kdc exited ({self._kdc.returncode}): {log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{self.port} within 15 s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quoted(word: str) -> str:
    return f'"{word}"' if any(c.isspace() for c in word) else word
