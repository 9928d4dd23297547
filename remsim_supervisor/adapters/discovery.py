"""Find the modems and their ports through sysfs alone.

OpenWrt has no udev (procd handles hotplug), and ttyUSB numbers move with
other USB devices and with the modem's composition, so a port is named by
USB device path and ``bInterfaceNumber``, the way ModemManager does, and its
tty is read from sysfs. Both roots are injectable: tests and the lab point
them at a tree built by ``lab.fakesysfs``. pyudev is not used.

Layout read (the kernel's, documented in Documentation/ABI):

``<sys>/bus/usb/devices/<usb_path>``
    symlink into ``<sys>/devices/...``; the device directory holds
    ``idVendor``/``idProduct`` (4 hex digits), ``manufacturer``, ``product``,
    ``authorized`` and ``power/control``. Root hubs (``usb1``) and interface
    links (``1-1.2:1.0``) in the same directory are skipped.
``<devdir>/<usb_path>:<config>.<ifnum>``
    one directory per interface (ifnum decimal in the name), with
    ``bInterfaceNumber``/``bInterfaceClass``/``SubClass``/``Protocol`` (hex)
    and a ``driver`` symlink whose basename is the driver. usb-serial ports
    (option, qcserial) appear as ``<ifdir>/ttyUSBn/``, CDC-ACM ports as
    ``<ifdir>/tty/ttyACMn/``, network devices as ``<ifdir>/net/<name>/``,
    QMI/MBIM control devices as ``<ifdir>/usbmisc/cdc-wdmN/``.
``<sys>/bus/pci/devices/<address>`` (PCIe modems such as ``mtk_t7xx`` ones)
    ``vendor``/``device`` ("0x14c3"); the WWAN core puts its device at
    ``<devdir>/wwan/wwanN/``, its character ports beside it
    (``wwanNat0``, ``wwanNmbim0``: the suffix is the port type) and its
    network device under ``wwanN/net/``; ``/sys/class/wwan`` is the fallback
    index. Such a modem has no ``authorized`` file: recovery by USB
    re-authorisation does not apply (``FoundModem.bus == "pci"``).

Every read is defensive: a device unplugged mid-scan makes the scan return
None or skip it, never raise. Nothing here opens a port; which of the found
ports to probe, and how carefully, is the caller's decision
(``FoundModem.needs_probe``, ``at_candidates``, ``never_open_ttys``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from remsim_supervisor.vendors import PROFILES
from remsim_supervisor.vendors.base import Composition, ModemProfile
from remsim_supervisor.vendors.ports import assign_roles

__all__ = ["Discovery", "FoundModem", "UsbInterface"]

_USB_DEVICE_NAME = re.compile(r"^\d+-\d+(?:\.\d+)*$")  # "1-1.2"; not "usb1", not "1-1.2:1.0"
_PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_TTY_NAME = re.compile(r"^tty[A-Za-z]+\d+$")
_WWAN_DEVICE = re.compile(r"^wwan\d+$")
_WWAN_PORT = re.compile(r"^wwan\d+[a-z]+\d+$")
_WWAN_AT_PORT = re.compile(r"^wwan\d+at\d+$")  # the kernel names AT ports wwan<N>at<M>


@dataclass(frozen=True)
class UsbInterface:
    """One interface of a USB device as sysfs shows it (PCIe: one pseudo-interface)."""

    number: int
    klass: int | None
    subclass: int | None
    protocol: int | None
    driver: str | None
    ttys: tuple[str, ...]
    nets: tuple[str, ...]
    wwan_ports: tuple[str, ...] = ()
    control_devices: tuple[str, ...] = ()  # cdc-wdmN (QMI/MBIM control)

    @property
    def at_ports(self) -> tuple[str, ...]:
        """Character devices of this interface that can carry AT: ttys, then wwan AT ports."""
        return self.ttys + tuple(p for p in self.wwan_ports if _WWAN_AT_PORT.match(p))


@dataclass(frozen=True)
class FoundModem:
    """A modem (or an unknown USB device) and the roles of its ports."""

    usb_path: str  # sysfs USB device name "1-1.2" (PCIe: the PCI address)
    vid: int
    pid: int
    manufacturer: str | None
    product: str | None
    profile: ModemProfile | None
    composition: Composition | None
    at_tty: str | None  # kernel name: "ttyUSB2", "ttyACM0", "wwan0at0"
    at_device: str | None  # path under the dev root
    secondary_tty: str | None
    at_candidates: tuple[str, ...]  # device paths worth probing, in order
    net_ifaces: tuple[str, ...]
    interfaces: tuple[UsbInterface, ...]
    sysfs_device: str  # device directory (its ``authorized`` file re-authorises USB)
    never_open_ttys: tuple[str, ...] = ()  # ports that must never be opened (diag, debug)
    bus: str = "usb"
    #: Device paths of the ports known to speak AT, in the order to use them
    #: (main, secondary, the composition's other AT ports): the next one is
    #: used while a program holds the one before (``vendors.ports.PortRoles``).
    at_ports: tuple[str, ...] = ()

    @property
    def usb_id(self) -> tuple[int, int]:
        return (self.vid, self.pid)

    @property
    def needs_probe(self) -> bool:
        """The AT port is not certain: probe ``at_candidates`` before trusting ``at_tty``."""
        return self.at_tty is None or self.composition is None or self.composition.needs_probe

    @property
    def control_devices(self) -> tuple[str, ...]:
        """QMI/MBIM control devices (cdc-wdmN, wwanNmbimM), kernel names."""
        wdm = tuple(d for i in self.interfaces for d in i.control_devices)
        wwan = tuple(p for i in self.interfaces for p in i.wwan_ports if not _WWAN_AT_PORT.match(p))
        return wdm + wwan


class Discovery:
    """Enumerates modems under ``sysfs_root`` and names their devices under ``dev_root``."""

    def __init__(
        self,
        sysfs_root: str = "/sys",
        dev_root: str = "/dev",
        profiles: Iterable[ModemProfile] | None = None,
    ) -> None:
        self.sysfs_root = sysfs_root
        self.dev_root = dev_root
        # Injectable so configuration can add ids (ModemProfile.with_usb_id).
        self.profiles: tuple[ModemProfile, ...] = (
            tuple(profiles) if profiles is not None else tuple(PROFILES.values())
        )
        self._usb_root = os.path.join(sysfs_root, "bus", "usb", "devices")
        self._pci_root = os.path.join(sysfs_root, "bus", "pci", "devices")

    # -- public API -------------------------------------------------------------

    def find(
        self,
        usb_path: str | None = None,
        usb_id: tuple[int, int] | None = None,
        model: str | None = None,
    ) -> FoundModem | None:
        """One modem: by USB path (wins, known or not), else by id, else by model.

        ``usb_id`` picks the first device with that id in path order
        (deterministic across scans). ``model`` is a profile key or text a
        profile's model patterns recognise; with neither, the first
        known modem.
        """
        if usb_path is not None:
            return self.scan(usb_path)
        if usb_id is not None:
            for name, bus in self._device_names():
                if self._ids(bus, name) == tuple(usb_id):
                    found = self.scan(name)
                    if found is not None:
                        return found
            return None
        wanted = self._profile_key_for(model) if model is not None else None
        if model is not None and wanted is None:
            return None
        for found in self._iter_known():
            if wanted is None or (found.profile is not None and found.profile.key == wanted):
                return found
        return None

    def locate(
        self,
        at_port: str | None = None,
        usb_path: str | None = None,
        usb_id: tuple[int, int] | None = None,
        model: str | None = None,
    ) -> tuple[FoundModem | None, str | None, str]:
        """(modem, AT port to open, why there is none) for a configured modem.

        A configured ``at_port`` is taken as it is (no modem is looked up);
        otherwise :meth:`find` picks the modem and its AT port is the one its
        composition names, else its first candidate.
        """
        if at_port:
            if os.path.exists(at_port):
                return None, at_port, ""
            return None, None, f"AT port {at_port} does not exist"
        found = self.find(usb_path=usb_path, usb_id=usb_id, model=model)
        where = (
            (usb_path and f"USB path {usb_path}")
            or (usb_id and f"USB id {usb_id[0]:04x}:{usb_id[1]:04x}")
            or "any known modem"
        )
        if found is None:
            return None, None, f"no modem at {where}"
        path = found.at_device or (found.at_candidates[0] if found.at_candidates else None)
        return found, path, "" if path else f"modem at {where} has no AT port (yet)"

    def list_modems(self) -> list[FoundModem]:
        """Every device whose id a profile knows, in path order (USB first, then PCIe)."""
        return list(self._iter_known())

    def scan(self, usb_path: str) -> FoundModem | None:
        """Whatever device sits at ``usb_path`` (USB name or PCI address), known or not."""
        if not _safe_name(usb_path):
            return None
        if _USB_DEVICE_NAME.match(usb_path) and os.path.lexists(
            os.path.join(self._usb_root, usb_path)
        ):
            return self._scan_usb(usb_path)
        if _PCI_ADDRESS.match(usb_path) and os.path.lexists(os.path.join(self._pci_root, usb_path)):
            return self._scan_pci(usb_path)
        return None

    def device_for_tty(self, tty: str) -> str:
        """The device node path of a kernel tty/port name."""
        return os.path.join(self.dev_root, tty)

    def usb_device_dir(self, usb_path: str) -> str | None:
        """The real sysfs directory of the device, or None when it is not there."""
        if not _safe_name(usb_path):
            return None
        for root in (self._usb_root, self._pci_root):
            link = os.path.join(root, usb_path)
            if os.path.lexists(link):
                target = os.path.realpath(link)
                return target if os.path.isdir(target) else None
        return None

    # -- enumeration --------------------------------------------------------------

    def _device_names(self) -> Iterator[tuple[str, str]]:
        for name in sorted(_listdir(self._usb_root), key=_natural_key):
            if _USB_DEVICE_NAME.match(name):
                yield name, "usb"
        for name in sorted(_listdir(self._pci_root), key=_natural_key):
            if _PCI_ADDRESS.match(name):
                yield name, "pci"

    def _ids(self, bus: str, name: str) -> tuple[int, int] | None:
        if bus == "usb":
            devdir = os.path.join(self._usb_root, name)
            return _read_id_pair(devdir, "idVendor", "idProduct")
        devdir = os.path.join(self._pci_root, name)
        return _read_id_pair(devdir, "vendor", "device")

    def _iter_known(self) -> Iterator[FoundModem]:
        for name, bus in self._device_names():
            ids = self._ids(bus, name)
            if ids is None or self._profile_for_id(*ids, bus=bus) is None:
                continue  # unknown id (hubs, the router's own devices) or vanished
            found = self._scan_usb(name) if bus == "usb" else self._scan_pci(name)
            if found is not None:
                yield found

    def _profile_for_id(self, vid: int, pid: int, *, bus: str = "usb") -> ModemProfile | None:
        for profile in self.profiles:
            if any(c.vid == vid and c.pid == pid and c.bus == bus for c in profile.compositions):
                return profile
        return None

    def _profile_key_for(self, model: str) -> str | None:
        key = model.strip().lower()
        for profile in self.profiles:
            if profile.key == key:
                return key
        for profile in self.profiles:
            if profile.matches(model):
                return profile.key
        return None

    # -- USB ----------------------------------------------------------------------

    def _scan_usb(self, usb_path: str) -> FoundModem | None:
        devdir = os.path.realpath(os.path.join(self._usb_root, usb_path))
        ids = _read_id_pair(devdir, "idVendor", "idProduct")
        if ids is None:
            return None
        vid, pid = ids
        interfaces = tuple(
            sorted(
                (
                    iface
                    for entry in _listdir(devdir)
                    if entry.startswith(usb_path + ":")
                    and (iface := _scan_interface(os.path.join(devdir, entry), entry)) is not None
                ),
                key=lambda i: i.number,
            )
        )
        found = self._assemble(
            usb_path=usb_path,
            devdir=devdir,
            vid=vid,
            pid=pid,
            manufacturer=_read(os.path.join(devdir, "manufacturer")),
            product=_read(os.path.join(devdir, "product")),
            interfaces=interfaces,
            bus="usb",
        )
        # Unplugged while we looked: half a picture is worse than none.
        if _read_id_pair(devdir, "idVendor", "idProduct") != ids:
            return None
        return found

    # -- PCIe (wwan) ----------------------------------------------------------------

    def _scan_pci(self, address: str) -> FoundModem | None:
        devdir = os.path.realpath(os.path.join(self._pci_root, address))
        ids = _read_id_pair(devdir, "vendor", "device")
        if ids is None:
            return None
        ports, nets = self._wwan_children(devdir)
        iface = UsbInterface(
            number=0,
            klass=None,
            subclass=None,
            protocol=None,
            driver=_link_name(os.path.join(devdir, "driver")),
            ttys=(),
            nets=nets,
            wwan_ports=ports,
        )
        found = self._assemble(
            usb_path=address,
            devdir=devdir,
            vid=ids[0],
            pid=ids[1],
            manufacturer=None,
            product=None,
            interfaces=(iface,),
            bus="pci",
        )
        if _read_id_pair(devdir, "vendor", "device") != ids:
            return None
        return found

    def _wwan_children(self, devdir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        ports: list[str] = []
        nets: list[str] = []
        wwan_glue = os.path.join(devdir, "wwan")
        for wwan in _listdir(wwan_glue):
            if not _WWAN_DEVICE.match(wwan):
                continue
            wdir = os.path.join(wwan_glue, wwan)
            ports.extend(p for p in _listdir(wdir) if _WWAN_PORT.match(p))
            nets.extend(_listdir(os.path.join(wdir, "net")))
        if not ports:
            # Fallback: the class index, for kernels that place the device elsewhere.
            prefix = devdir.rstrip(os.sep) + os.sep
            class_dir = os.path.join(self.sysfs_root, "class", "wwan")
            for name in _listdir(class_dir):
                if _WWAN_PORT.match(name) and os.path.realpath(
                    os.path.join(class_dir, name)
                ).startswith(prefix):
                    ports.append(name)
        return (
            tuple(sorted(set(ports), key=_natural_key)),
            tuple(sorted(set(nets), key=_natural_key)),
        )

    # -- roles --------------------------------------------------------------------

    def _assemble(
        self,
        *,
        usb_path: str,
        devdir: str,
        vid: int,
        pid: int,
        manufacturer: str | None,
        product: str | None,
        interfaces: tuple[UsbInterface, ...],
        bus: str,
    ) -> FoundModem:
        profile = self._profile_for_id(vid, pid, bus=bus)
        composition = profile.composition_for(vid, pid, interfaces) if profile else None
        roles = assign_roles(composition, interfaces)
        return FoundModem(
            usb_path=usb_path,
            vid=vid,
            pid=pid,
            manufacturer=manufacturer,
            product=product,
            profile=profile,
            composition=composition,
            at_tty=roles.at,
            at_device=self.device_for_tty(roles.at) if roles.at else None,
            secondary_tty=roles.secondary,
            at_candidates=tuple(self.device_for_tty(n) for n in roles.candidates),
            net_ifaces=tuple(n for i in interfaces for n in i.nets),
            interfaces=interfaces,
            sysfs_device=devdir,
            never_open_ttys=roles.never_open,
            bus=bus,
            at_ports=tuple(self.device_for_tty(n) for n in roles.at_ports),
        )


# --- defensive sysfs reads -------------------------------------------------------


def _read(path: str) -> str | None:
    """File contents without the trailing newline; None if unreadable or gone."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _read_hex(path: str) -> int | None:
    text = _read(path)
    if not text:
        return None
    try:
        return int(text, 16)  # accepts "02", "2c7c" and "0x14c3"
    except ValueError:
        return None


def _read_id_pair(devdir: str, vendor_file: str, product_file: str) -> tuple[int, int] | None:
    vid = _read_hex(os.path.join(devdir, vendor_file))
    pid = _read_hex(os.path.join(devdir, product_file))
    if vid is None or pid is None:
        return None
    return (vid, pid)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _scan_interface(ifdir: str, entry: str) -> UsbInterface | None:
    number = _read_hex(os.path.join(ifdir, "bInterfaceNumber"))
    if number is None:
        # The directory name carries it too (decimal): "1-1.2:1.10".
        tail = entry.rpartition(".")[2]
        if not tail.isdigit():
            return None
        number = int(tail)
    entries = _listdir(ifdir)
    if not entries:
        return None  # gone (a live interface directory is never empty)
    ttys = {e for e in entries if _TTY_NAME.match(e)}  # usb-serial: <ifdir>/ttyUSBn/
    ttys.update(e for e in _listdir(os.path.join(ifdir, "tty")) if _TTY_NAME.match(e))  # cdc-acm
    wwan_ports: list[str] = []
    for wwan in _listdir(os.path.join(ifdir, "wwan")):  # USB drivers on the WWAN core
        wdir = os.path.join(ifdir, "wwan", wwan)
        wwan_ports.extend(p for p in _listdir(wdir) if _WWAN_PORT.match(p))
    return UsbInterface(
        number=number,
        klass=_read_hex(os.path.join(ifdir, "bInterfaceClass")),
        subclass=_read_hex(os.path.join(ifdir, "bInterfaceSubClass")),
        protocol=_read_hex(os.path.join(ifdir, "bInterfaceProtocol")),
        driver=_link_name(os.path.join(ifdir, "driver")),
        ttys=tuple(sorted(ttys, key=_natural_key)),
        nets=tuple(sorted(_listdir(os.path.join(ifdir, "net")), key=_natural_key)),
        wwan_ports=tuple(sorted(wwan_ports, key=_natural_key)),
        control_devices=tuple(sorted(_listdir(os.path.join(ifdir, "usbmisc")), key=_natural_key)),
    )


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts 1-1.10 after 1-1.2 and ttyUSB10 after ttyUSB9."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", name)
    )


def _safe_name(name: str) -> bool:
    """A bare sysfs entry name: configuration must not steer reads elsewhere."""
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name
