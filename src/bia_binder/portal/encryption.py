"""Logged-in homes encrypted at rest: ext4 encryption (fscrypt, v2 policies), one key per user.

How the keys are kept::

    master key   32 random bytes, outside the data dir: /etc/bia-binder/home-master.key (0600),
                 or $BIA_BINDER_HOME_MASTER_KEY (hex); made on first use if neither exists
    user key     64 random bytes per user (the fscrypt key of their home), stored only wrapped:
                 <keys_dir>/<user>.key = AES-256-GCM(master key, user key), the user name as
                 associated data, so a wrapped key copied to another user's name does not open
    on disk      the home image holds ciphertext and encrypted file names; no key, no password

A session's start unlocks its home (the user key goes into the mounted filesystem's keyring,
``FS_IOC_ADD_ENCRYPTION_KEY``); its stop locks it again (``FS_IOC_REMOVE_ENCRYPTION_KEY``, then the
image is unmounted), so a stopped user's files are ciphertext to anyone holding the images. No user
password is involved: LS Login users have none here, and a session must start without one.

Rotating the master key (``bia-binder users rotate-master-key``) re-wraps every user key; the data is
not re-encrypted. Losing the master key loses every encrypted home: back it up apart from the images.

Why the kernel interface rather than Debian's ``fscrypt`` command: the command keeps its own
metadata in each filesystem and a global ``/etc/fscrypt.conf``, protects keys with passphrases or
login passwords we do not have, and its raw-key protector would still leave us storing keys. We
need four ioctls of a stable kernel ABI (``Documentation/filesystems/fscrypt.rst``), so they are
called here directly. The policies are the kernel's standard v2 ones, which Debian's tools understand.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import struct
from pathlib import Path

from traitlets import Bool, Unicode
from traitlets.config import LoggingConfigurable

from ..sessions.disks import DiskError, disk_name

MASTER_KEY_ENV = "BIA_BINDER_HOME_MASTER_KEY"
MASTER_KEY_BYTES = 32
#: AES-256-XTS contents encryption needs 64 bytes of key (fscrypt.rst, "Key hierarchy")
USER_KEY_BYTES = 64
WRAP_FORMAT = "bia-binder-home-key-v1"

# --- the kernel interface (linux/fscrypt.h) -------------------------------------------------------
FSCRYPT_POLICY_V2 = 2
FSCRYPT_MODE_AES_256_XTS = 1
FSCRYPT_MODE_AES_256_CTS = 4
FSCRYPT_POLICY_FLAGS_PAD_32 = 0x03  # file names padded to 32 bytes: their lengths leak less
FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER = 2
FSCRYPT_KEY_STATUS_ABSENT, FSCRYPT_KEY_STATUS_PRESENT, FSCRYPT_KEY_STATUS_INCOMPLETELY_REMOVED = 1, 2, 3


def _iowr(nr: int, size: int, read_only: bool = False) -> int:
    direction = 2 if read_only else 3  # _IOR / _IOWR
    return (direction << 30) | (size << 16) | (ord("f") << 8) | nr


KEY_SPEC_SIZE = 40  # struct fscrypt_key_specifier: type, reserved, 32-byte union
FS_IOC_SET_ENCRYPTION_POLICY = _iowr(19, 12, read_only=True)  # declared with the v1 struct's size
FS_IOC_GET_ENCRYPTION_POLICY_EX = _iowr(22, 9)  # size of the header: u64 size + version byte
FS_IOC_ADD_ENCRYPTION_KEY = _iowr(23, 80)
FS_IOC_REMOVE_ENCRYPTION_KEY = _iowr(24, 64)
FS_IOC_GET_ENCRYPTION_KEY_STATUS = _iowr(26, 128)


class EncryptionError(DiskError):
    """Encryption could not be set up, unlocked or locked; the message says why and what to do."""


def _key_spec(identifier: bytes = b"") -> bytes:
    return struct.pack("=II32s", FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER, 0, identifier)


def _ioctl(path: Path, request: int, arg: bytearray, what: str) -> bytearray:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, request, arg, True)
    except OSError as e:
        raise EncryptionError(f"{what} at {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    return arg


def add_key(mount_point: Path, raw_key: bytes) -> bytes:
    """Put ``raw_key`` into the filesystem's keyring (every process then sees its files); its 16-byte identifier."""
    header = _key_spec() + struct.pack("=II32x", len(raw_key), 0)
    # a ctypes buffer, zeroed after use: the key should not linger in this process's heap
    buffer = ctypes.create_string_buffer(header + raw_key, len(header) + len(raw_key))
    try:
        arg = bytearray(buffer.raw)
        try:
            _ioctl(mount_point, FS_IOC_ADD_ENCRYPTION_KEY, arg, "adding the home's key")
            return bytes(arg[8:24])
        finally:
            arg[:] = bytes(len(arg))
    finally:
        ctypes.memset(buffer, 0, len(buffer))


def remove_key(mount_point: Path, identifier: bytes) -> None:
    """Take the key out of the filesystem's keyring: its files become ciphertext (``EncryptionError`` if busy)."""
    arg = bytearray(_key_spec(identifier) + bytes(24))
    _ioctl(mount_point, FS_IOC_REMOVE_ENCRYPTION_KEY, arg, "removing the home's key")
    (flags,) = struct.unpack_from("=I", arg, KEY_SPEC_SIZE)
    if flags & 0x1:  # FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY
        raise EncryptionError(f"the home at {mount_point} is still in use: files stay readable until they are closed")


def key_status(mount_point: Path, identifier: bytes) -> int:
    arg = bytearray(_key_spec(identifier) + bytes(88))
    _ioctl(mount_point, FS_IOC_GET_ENCRYPTION_KEY_STATUS, arg, "reading the home's key status")
    return struct.unpack_from("=I", arg, KEY_SPEC_SIZE + 24)[0]


def set_policy(directory: Path, identifier: bytes) -> None:
    """Encrypt the (empty) ``directory`` and everything made in it later with the key ``identifier``."""
    policy = struct.pack(
        "=BBBBB3x16s", FSCRYPT_POLICY_V2, FSCRYPT_MODE_AES_256_XTS, FSCRYPT_MODE_AES_256_CTS,
        FSCRYPT_POLICY_FLAGS_PAD_32, 0, identifier,
    )  # fmt: skip
    _ioctl(directory, FS_IOC_SET_ENCRYPTION_POLICY, bytearray(policy), "encrypting the home")


def policy_identifier(directory: Path) -> bytes | None:
    """The key identifier of ``directory``'s v2 policy, or None when it is not encrypted."""
    arg = bytearray(struct.pack("=Q", 24) + bytes(24))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_GET_ENCRYPTION_POLICY_EX, arg, True)
    except OSError:
        return None  # ENODATA: not encrypted; ENOTTY/EOPNOTSUPP: no support
    finally:
        os.close(fd)
    return bytes(arg[8 + 8 : 8 + 24]) if arg[8] == FSCRYPT_POLICY_V2 else None


def host_support() -> str | None:
    """Why homes cannot be encrypted on this host, or None when they can."""
    if os.geteuid() != 0:
        return "not root: adding keys to a filesystem and loop-mounting need root"
    if not Path("/sys/fs/ext4/features/encryption").exists():
        return "this kernel's ext4 has no encryption support (no /sys/fs/ext4/features/encryption)"
    return None


# --- keys ---------------------------------------------------------------------------------------


def _aesgcm(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def wrap_key(master_key: bytes, username: str, user_key: bytes) -> dict:
    nonce = secrets.token_bytes(12)
    sealed = _aesgcm(master_key).encrypt(nonce, user_key, f"{WRAP_FORMAT}:{username}".encode())
    return {"format": WRAP_FORMAT, "nonce": nonce.hex(), "sealed": sealed.hex()}


def unwrap_key(master_key: bytes, username: str, wrapped: dict) -> bytes:
    from cryptography.exceptions import InvalidTag

    if wrapped.get("format") != WRAP_FORMAT:
        raise EncryptionError(f"the key of {username} has an unknown format {wrapped.get('format')!r}")
    try:
        return _aesgcm(master_key).decrypt(
            bytes.fromhex(wrapped["nonce"]), bytes.fromhex(wrapped["sealed"]), f"{WRAP_FORMAT}:{username}".encode()
        )
    except (InvalidTag, KeyError, ValueError):
        raise EncryptionError(
            f"the key of {username} does not open with this master key: is it the master key the home was made with? "
            "(c.HomeEncryption.master_key_file or $" + MASTER_KEY_ENV + ")"
        ) from None


class HomeEncryption(LoggingConfigurable):
    """The master key, the wrapped user keys, and locking/unlocking a mounted home."""

    enabled = Unicode(
        "auto",
        help="'auto': encrypt new homes where the host supports it (and say so at start-up when it does not); "
        "'yes': refuse to start without support; 'no': plain homes.",
    ).tag(config=True)

    master_key_file = Unicode(
        "/etc/bia-binder/home-master.key",
        help=f"The service master key (32 bytes, hex), mode 0600, made on first use. ${MASTER_KEY_ENV} (hex) wins. "
        "Keep it away from the home images and back it up: without it no encrypted home opens.",
    ).tag(config=True)

    keys_dir = Unicode(
        "",
        help="Where the users' keys are kept, each wrapped with the master key (default: <HomeManager.root>/keys).",
    ).tag(config=True)

    create_master_key = Bool(True, help="Make a master key at master_key_file when there is none.").tag(config=True)

    def active(self) -> bool:
        """Whether new homes are encrypted (raises when 'yes' was asked and the host cannot)."""
        if self.enabled == "no":
            return False
        reason = host_support()
        if reason and self.enabled == "yes":
            raise EncryptionError(f"home encryption was required (c.HomeEncryption.enabled = 'yes') but {reason}")
        return reason is None

    def status_line(self) -> str:
        """One line for `bia-binder up` and `doctor`: whether homes are encrypted here, and why not."""
        if self.enabled == "no":
            return "off (c.HomeEncryption.enabled = 'no'): logged-in homes are plain ext4 images"
        reason = host_support()
        if reason:
            return f"off: {reason}; logged-in homes are NOT encrypted at rest"
        return "on: each logged-in home is encrypted (ext4/fscrypt), unlocked only while its session runs"

    # master key ------------------------------------------------------------------------------
    def master_key(self) -> bytes:
        value = os.environ.get(MASTER_KEY_ENV, "").strip()
        if value:
            return self._parse_master_key(value, f"${MASTER_KEY_ENV}")
        path = Path(self.master_key_file)
        if not path.exists():
            if not self.create_master_key:
                raise EncryptionError(f"no master key at {path}: restore it from your backup, or set ${MASTER_KEY_ENV}")
            self.write_master_key(path, secrets.token_bytes(MASTER_KEY_BYTES))
            self.log.warning("Created the home master key %s: back it up apart from the homes; without it no home opens", path)
        if path.stat().st_mode & 0o077:
            raise EncryptionError(f"the master key {path} is readable by others: chmod 600 {path}")
        return self._parse_master_key(path.read_text(), str(path))

    @staticmethod
    def write_master_key(path: Path, key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        os.replace(staged, path)

    @staticmethod
    def _parse_master_key(text: str, where: str) -> bytes:
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            key = b""
        if len(key) != MASTER_KEY_BYTES:
            raise EncryptionError(f"the master key in {where} is not {MASTER_KEY_BYTES} bytes of hex (openssl rand -hex 32)")
        return key

    # user keys --------------------------------------------------------------------------------
    def key_path(self, homes_root: Path, username: str) -> Path:
        return Path(self.keys_dir or homes_root / "keys") / f"{disk_name(username)}.key"

    def user_key(self, homes_root: Path, username: str, create: bool) -> bytes | None:
        """The user's key, unwrapped; a new one (stored wrapped) if ``create`` and they have none."""
        path = self.key_path(homes_root, username)
        if path.exists():
            return unwrap_key(self.master_key(), username, json.loads(path.read_text()))
        if not create:
            return None
        key = secrets.token_bytes(USER_KEY_BYTES)
        self._store(path, wrap_key(self.master_key(), username, key))
        return key

    @staticmethod
    def _store(path: Path, wrapped: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(wrapped, f)
        os.replace(staged, path)

    def rotate(self, homes_root: Path, new_master_key: bytes) -> int:
        """Re-wrap every user key under ``new_master_key``; the number re-wrapped. The caller installs the new key."""
        old = self.master_key()
        keys_dir = Path(self.keys_dir or homes_root / "keys")
        rewrapped = []
        for path in sorted(keys_dir.glob("*.key")):
            wrapped = json.loads(path.read_text())
            username = _username_of(path)
            rewrapped.append((path, wrap_key(new_master_key, username, unwrap_key(old, username, wrapped))))
        for path, wrapped in rewrapped:  # only once every key opened with the old one
            self._store(path, wrapped)
        return len(rewrapped)

    # mounted homes ----------------------------------------------------------------------------
    def unlock(self, homes_root: Path, username: str, mount_point: Path, home: Path) -> None:
        """Make ``home`` (a directory on the mounted filesystem) usable: encrypted now if new, its key added."""
        new = not home.exists()
        key = self.user_key(homes_root, username, create=new)
        if key is None:
            raise EncryptionError(
                f"the home of {username} is encrypted but its key {self.key_path(homes_root, username)} is missing: "
                "restore the keys directory from your backup"
            )
        identifier = add_key(mount_point, key)
        if new:
            home.mkdir(mode=0o700)
            set_policy(home, identifier)
        elif policy_identifier(home) != identifier:
            raise EncryptionError(f"the home of {username} is encrypted with another key than the one kept for them")

    def lock(self, mount_point: Path, home: Path) -> None:
        """Take the home's key out of the filesystem (before it is unmounted): its files are ciphertext again."""
        identifier = policy_identifier(home) if home.is_dir() else None
        if identifier and key_status(mount_point, identifier) != FSCRYPT_KEY_STATUS_ABSENT:
            remove_key(mount_point, identifier)


def _username_of(key_file: Path) -> str:
    from ..sessions.disks import owner_from_disk_name

    return owner_from_disk_name(key_file.name.removesuffix(".key"))
