"""A fake sysfs and /dev, so tests and the simulated lab can plug and unplug modems.

``FakeSysfs(root)`` creates ``root/sys`` and ``root/dev`` and writes the same
layout the kernel does (see ``discovery`` for what is read):

* ``sys/devices/platform/fake-hcd/usbB/<usb_path>/`` with ``idVendor``,
  ``idProduct``, ``manufacturer``, ``product``, ``authorized``,
  ``power/control``; a relative symlink ``sys/bus/usb/devices/<usb_path>``;
  a root hub ``usbB`` (1d6b:0002) per bus, as on a real system.
* one ``<usb_path>:1.<n>`` directory per interface with
  ``bInterfaceNumber``/``Class``/``SubClass``/``Protocol`` in hex and a
  ``driver`` symlink into ``sys/bus/usb/drivers/``; interface symlinks in
  ``sys/bus/usb/devices`` too (discovery must skip them).
* usb-serial ttys as ``<ifdir>/ttyUSBn/tty/ttyUSBn``, CDC-ACM ttys as
  ``<ifdir>/tty/ttyACMn``, net devices as ``<ifdir>/net/<name>``, QMI/MBIM
  control as ``<ifdir>/usbmisc/cdc-wdmN``, each with its ``sys/class`` link.
* PCIe modems (``add_pci_modem``): ``sys/bus/pci/devices/<address>`` with
  ``vendor``/``device``, and the WWAN core's ``wwan/wwanN/wwanNat0``,
  ``wwan/wwanN/net/wwanK`` plus ``sys/class/wwan`` links.

Numbers are allocated like the kernel: the lowest free ``ttyUSBn`` /
``ttyACMn`` / ``wwanN`` / ``usbN``, freed again on unplug, so unplugging one
modem and plugging another renumbers ports the way it does on a router.

With ``profile_key`` (and optionally ``composition_label``),
``add_usb_modem`` lays out a composition's published ports from the vendor
profile; ``interfaces`` gives full control instead. No device nodes are
created (that needs root); ``link_dev`` points ``dev/<tty>`` at, say, the
pty of an emulated modem, and unplugging removes it as devtmpfs would.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remsim_supervisor.vendors import PROFILES, get_profile, profile_for_usb_id
from remsim_supervisor.vendors.base import Composition, Port

__all__ = ["FakeSysfs", "InterfaceSpec", "specs_for"]

AUTO = "auto"  # InterfaceSpec.net: let the builder name it like the kernel would

# Kernel naming: usbnet drivers flagged WWAN name their devices wwan%d, the rest usb%d.
_WWAN_NET_DRIVERS = frozenset({"qmi_wwan", "cdc_mbim", "huawei_cdc_ncm"})
# Drivers that add a cdc-wdm control device beside the network device.
_WDM_DRIVERS = frozenset({"qmi_wwan", "cdc_mbim", "huawei_cdc_ncm"})
_TTY_PREFIX = {"usbserial": "ttyUSB", "acm": "ttyACM"}
_TTY_MAJOR = {"ttyUSB": 188, "ttyACM": 166}
# WWAN core port types: sysfs ``type`` value and device-name suffix.
_WWAN_TYPES = {
    "at": "AT",
    "mbim": "MBIM",
    "qmi": "QMI",
    "qcdm": "QCDM",
    "firehose": "FIREHOSE",
    "xmmrpc": "XMMRPC",
    "fastboot": "FASTBOOT",
    "adb": "ADB",
    "mipc": "MIPC",
}


@dataclass(frozen=True)
class InterfaceSpec:
    """How one fake USB interface looks."""

    driver: str | None = "option"
    klass: int = 0xFF
    subclass: int = 0xFF
    protocol: int = 0xFF
    tty: str | None = "usbserial"  # "usbserial" (ttyUSBn), "acm" (ttyACMn) or None
    net: str | None = None  # network device name, AUTO, or None
    control: bool = False  # add a cdc-wdm control device (QMI/MBIM)


def specs_for(ports: tuple[Port, ...]) -> dict[int, InterfaceSpec]:
    """Interface specs for a composition's published ports."""
    return {
        p.number: InterfaceSpec(
            driver=p.driver,
            klass=p.klass,
            subclass=p.subclass,
            protocol=p.protocol,
            tty=p.tty,
            net=AUTO if p.net else None,
            control=p.net and p.driver in _WDM_DRIVERS,
        )
        for p in ports
    }


@dataclass
class _Plugged:
    devdir: Path
    links: list[Path] = field(default_factory=list)  # symlinks outside devdir to remove
    ttys: dict[int, str] = field(default_factory=dict)  # ifnum -> tty
    nets: dict[int, str] = field(default_factory=dict)
    names: list[tuple[str, int]] = field(default_factory=list)  # allocated (pool, number)
    dev_names: list[str] = field(default_factory=list)  # entries devtmpfs would remove


class FakeSysfs:
    """Builds and tears down fake sysfs/dev trees under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._sys = self.root / "sys"
        self._dev = self.root / "dev"
        self.sysfs_root = str(self._sys)
        self.dev_root = str(self._dev)
        for sub in (
            "bus/usb/devices",
            "bus/usb/drivers",
            "bus/pci/devices",
            "bus/pci/drivers",
            "class/tty",
            "class/net",
            "class/usbmisc",
            "class/wwan",
            "devices/platform/fake-hcd",
            "devices/pci0000:00/0000:00:1c.0",
        ):
            (self._sys / sub).mkdir(parents=True, exist_ok=True)
        self._dev.mkdir(parents=True, exist_ok=True)
        self._taken: dict[str, set[int]] = {}
        self._plugged: dict[str, _Plugged] = {}

    # -- USB ------------------------------------------------------------------------

    def add_usb_modem(
        self,
        usb_path: str,
        vid: int,
        pid: int,
        interfaces: Mapping[int, InterfaceSpec] | None = None,
        *,
        manufacturer: str | None = None,
        product: str | None = None,
        profile_key: str | None = None,
        composition_label: str | None = None,
    ) -> str:
        """Plug a USB device; returns its device directory.

        ``interfaces`` wins; otherwise the layout comes from the composition
        chosen by ``profile_key``/``composition_label`` (or from the registry
        by id). An id nobody knows, without ``interfaces``, plugs a device
        with no interfaces.
        """
        if usb_path in self._plugged:
            raise ValueError(f"{usb_path} is already plugged")
        composition = None
        if interfaces is None:
            composition = _find_composition(vid, pid, profile_key, composition_label)
            interfaces = specs_for(composition.ports) if composition else {}
        profile = get_profile(profile_key) if profile_key else profile_for_usb_id(vid, pid)
        bus = int(usb_path.split("-", 1)[0])
        hub = self._ensure_root_hub(bus)
        devdir = hub / usb_path
        devdir.mkdir(parents=True)
        plugged = _Plugged(devdir)
        self._plugged[usb_path] = plugged
        _write(devdir / "idVendor", f"{vid:04x}")
        _write(devdir / "idProduct", f"{pid:04x}")
        _write(devdir / "manufacturer", manufacturer or (profile.vendor if profile else "Unknown"))
        _write(devdir / "product", product or (profile.name if profile else "USB device"))
        _write(devdir / "authorized", "1")
        _write(devdir / "bConfigurationValue", "1")
        _write(devdir / "busnum", str(bus))
        _write(devdir / "power" / "control", "auto")
        plugged.links.append(self._link(self._sys / "bus/usb/devices" / usb_path, devdir))
        for number in sorted(interfaces):
            self._add_interface(usb_path, plugged, number, interfaces[number])
        return str(devdir)

    def remove_usb_device(self, usb_path: str) -> None:
        """Unplug: the device directory, its links, its names and its /dev entries go."""
        plugged = self._plugged.pop(usb_path, None)
        if plugged is None:
            raise KeyError(f"{usb_path} is not plugged")
        self._teardown(plugged)

    def tty_for(self, usb_path: str, ifnum: int) -> str | None:
        """The tty the fake kernel gave interface ``ifnum`` of ``usb_path``."""
        plugged = self._plugged.get(usb_path)
        return plugged.ttys.get(ifnum) if plugged else None

    def net_for(self, usb_path: str, ifnum: int) -> str | None:
        plugged = self._plugged.get(usb_path)
        return plugged.nets.get(ifnum) if plugged else None

    def device_dir(self, usb_path: str) -> str | None:
        plugged = self._plugged.get(usb_path)
        return str(plugged.devdir) if plugged else None

    # -- PCIe (mtk_t7xx) --------------------------------------------------------------

    def add_pci_modem(
        self,
        address: str = "0000:01:00.0",
        vendor: int = 0x14C3,
        device: int = 0x4D75,
        *,
        driver: str | None = "mtk_t7xx",
        ports: tuple[str, ...] = ("mbim", "at"),
        net: str | None = AUTO,
    ) -> str:
        """Plug a PCIe WWAN modem with WWAN-core ports; returns its device directory."""
        if address in self._plugged:
            raise ValueError(f"{address} is already plugged")
        devdir = self._sys / "devices/pci0000:00/0000:00:1c.0" / address
        devdir.mkdir(parents=True)
        plugged = _Plugged(devdir)
        self._plugged[address] = plugged
        _write(devdir / "vendor", f"0x{vendor:04x}")
        _write(devdir / "device", f"0x{device:04x}")
        _write(devdir / "power" / "control", "auto")
        plugged.links.append(self._link(self._sys / "bus/pci/devices" / address, devdir))
        if driver:
            self._bind(devdir, self._sys / "bus/pci/drivers" / driver)
        index = self._allocate(plugged, "wwandev")
        wwan = f"wwan{index}"
        wdir = devdir / "wwan" / wwan
        wdir.mkdir(parents=True)
        _write(wdir / "index", str(index))
        plugged.links.append(self._link(self._sys / "class/wwan" / wwan, wdir))
        per_type: dict[str, int] = {}
        for kind in ports:
            number = per_type.get(kind, 0)
            per_type[kind] = number + 1
            name = f"{wwan}{kind}{number}"
            pdir = wdir / name
            pdir.mkdir()
            _write(pdir / "type", _WWAN_TYPES[kind])
            plugged.links.append(self._link(self._sys / "class/wwan" / name, pdir))
            plugged.dev_names.append(name)
            plugged.ttys[len(plugged.ttys)] = name
        if net is not None:
            name = net if net != AUTO else f"wwan{self._allocate(plugged, 'net:wwan')}"
            ndir = wdir / "net" / name
            ndir.mkdir(parents=True)
            _write(ndir / "type", "65534")  # ARPHRD_NONE: raw IP
            plugged.links.append(self._link(self._sys / "class/net" / name, ndir))
            plugged.nets[0] = name
        return str(devdir)

    def remove_pci_device(self, address: str) -> None:
        self.remove_usb_device(address)  # same bookkeeping; named for the reader

    # -- /dev -----------------------------------------------------------------------

    def link_dev(self, tty: str, target: str) -> str:
        """Make ``dev/<tty>`` a symlink to ``target`` (e.g. an emulated modem's pty)."""
        path = self._dev / tty
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
        return str(path)

    def unlink_dev(self, tty: str) -> None:
        path = self._dev / tty
        if path.is_symlink() or path.exists():
            path.unlink()

    # -- internals --------------------------------------------------------------------

    def _ensure_root_hub(self, bus: int) -> Path:
        hub = self._sys / "devices/platform/fake-hcd" / f"usb{bus}"
        if not hub.exists():
            hub.mkdir(parents=True)
            _write(hub / "idVendor", "1d6b")  # Linux Foundation
            _write(hub / "idProduct", "0002")  # 2.0 root hub
            _write(hub / "product", "xHCI Host Controller")
            self._link(self._sys / "bus/usb/devices" / f"usb{bus}", hub)
        return hub

    def _add_interface(
        self, usb_path: str, plugged: _Plugged, number: int, spec: InterfaceSpec
    ) -> None:
        name = f"{usb_path}:1.{number}"  # the kernel writes the number in decimal here
        ifdir = plugged.devdir / name
        ifdir.mkdir()
        _write(ifdir / "bInterfaceNumber", f"{number:02x}")
        _write(ifdir / "bAlternateSetting", " 0")
        _write(ifdir / "bInterfaceClass", f"{spec.klass:02x}")
        _write(ifdir / "bInterfaceSubClass", f"{spec.subclass:02x}")
        _write(ifdir / "bInterfaceProtocol", f"{spec.protocol:02x}")
        plugged.links.append(self._link(self._sys / "bus/usb/devices" / name, ifdir))
        if spec.driver:
            self._bind(ifdir, self._sys / "bus/usb/drivers" / spec.driver)
        if spec.tty is not None:
            prefix = _TTY_PREFIX[spec.tty]
            index = self._allocate(plugged, prefix)
            tty = f"{prefix}{index}"
            if spec.tty == "usbserial":
                port_dir = ifdir / tty  # the usb-serial port device...
                port_dir.mkdir()
                _write(port_dir / "port_number", "0")
                class_dir = port_dir / "tty" / tty  # ...and its tty class device
            else:
                class_dir = ifdir / "tty" / tty
            class_dir.mkdir(parents=True)
            _write(class_dir / "dev", f"{_TTY_MAJOR[prefix]}:{index}")
            plugged.links.append(self._link(self._sys / "class/tty" / tty, class_dir))
            plugged.ttys[number] = tty
            plugged.dev_names.append(tty)
        if spec.net is not None:
            if spec.net == AUTO:
                prefix = "wwan" if spec.driver in _WWAN_NET_DRIVERS else "usb"
                net = f"{prefix}{self._allocate(plugged, 'net:' + prefix)}"
            else:
                net = spec.net
            ndir = ifdir / "net" / net
            ndir.mkdir(parents=True)
            _write(ndir / "address", "00:00:11:12:13:14")
            plugged.links.append(self._link(self._sys / "class/net" / net, ndir))
            plugged.nets[number] = net
        if spec.control:
            wdm = f"cdc-wdm{self._allocate(plugged, 'cdc-wdm')}"
            wdir = ifdir / "usbmisc" / wdm
            wdir.mkdir(parents=True)
            plugged.links.append(self._link(self._sys / "class/usbmisc" / wdm, wdir))
            plugged.dev_names.append(wdm)

    def _bind(self, directory: Path, driver_dir: Path) -> None:
        driver_dir.mkdir(parents=True, exist_ok=True)
        self._link(directory / "driver", driver_dir)

    def _allocate(self, plugged: _Plugged, pool: str) -> int:
        taken = self._taken.setdefault(pool, set())
        number = 0
        while number in taken:
            number += 1
        taken.add(number)
        plugged.names.append((pool, number))
        return number

    @staticmethod
    def _link(link: Path, target: Path) -> Path:
        # Relative, like the kernel's, so the tree can be moved or bind-mounted.
        link.symlink_to(os.path.relpath(target, link.parent))
        return link

    def _teardown(self, plugged: _Plugged) -> None:
        for link in plugged.links:
            if link.is_symlink():
                link.unlink()
        shutil.rmtree(plugged.devdir, ignore_errors=True)
        for pool, number in plugged.names:
            self._taken.get(pool, set()).discard(number)
        for name in plugged.dev_names:
            self.unlink_dev(name)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def _find_composition(
    vid: int, pid: int, profile_key: str | None, label: str | None
) -> Composition | None:
    """The composition to lay out: by id and label, else label alone, else id alone."""
    profiles = [get_profile(profile_key)] if profile_key else list(PROFILES.values())
    usb = [c for p in profiles for c in p.compositions if c.bus == "usb"]
    same_id = [c for c in usb if c.vid == vid and c.pid == pid]
    if label is not None:
        for pool in (same_id, usb):
            for comp in pool:
                if comp.label == label:
                    return comp
        raise ValueError(f"no composition labelled {label!r} for {vid:04x}:{pid:04x}")
    if same_id:
        return same_id[0]
    if profile_key is not None:
        raise ValueError(f"profile {profile_key} has no composition for {vid:04x}:{pid:04x}")
    return None
