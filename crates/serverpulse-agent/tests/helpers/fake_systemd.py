#!/usr/bin/python3
"""A stand-in for systemd on a private message bus, for the agent's D-Bus tests.

Owns org.freedesktop.systemd1 and answers org.freedesktop.DBus.Properties for objects
under /org/freedesktop/systemd1/unit/<escaped name>, with the property types systemd
uses (and a few more, so the agent's decoder meets every D-Bus type); the manager object
takes Subscribe. Written with python3-dbus, an implementation independent of the agent's
own wire code. For tests, interface test.FakeSystemd on the manager object changes a
unit's state (emitting PropertiesChanged, as systemd does for subscribers) and counts the
GetAll calls served.

Usage: fake_systemd.py BUS_ADDRESS   (prints "ready" once the name is owned)
"""

import re
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

UNITS = {
    "nginx.service": ("loaded", "active", "running", 1750537800123456, 812, 2),
    "mysql.service": ("loaded", "failed", "failed", 1750537900000000, 0, 5),
    "backup.timer": ("loaded", "active", "waiting", 1750530000000000, None, None),
}
# A unit whose properties the caller may not read: systemd answers with an error.
DENIED = "secret.service"
PREFIX = "/org/freedesktop/systemd1/unit"
MANAGER = "/org/freedesktop/systemd1"
SERVED = {"GetAll": 0}


def unescape(label):
    return re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), label)


def unit_properties(name):
    load, active, sub, since, _, _ = UNITS.get(name, ("not-found", "inactive", "dead", 0, None, None))
    return dbus.Dictionary(
        {
            "Id": dbus.String(name),
            "Names": dbus.Array([name], signature="s"),
            "LoadState": dbus.String(load),
            "ActiveState": dbus.String(active),
            "SubState": dbus.String(sub),
            "StateChangeTimestamp": dbus.UInt64(since),
            "StateChangeTimestampMonotonic": dbus.UInt64(since // 7),
            "CanStart": dbus.Boolean(True),
            "Job": dbus.Struct((dbus.UInt32(0), dbus.ObjectPath("/")), signature="uo"),
            "Conditions": dbus.Array(
                [dbus.Struct(("ConditionPathExists", False, False, "/etc/x", dbus.Int32(1)), signature="sbbsi")],
                signature="(sbbsi)",
            ),
            "LoadError": dbus.Struct(("", ""), signature="ss"),
            "InvocationID": dbus.ByteArray(b"\x01\x02\x03"),
            "Requires": dbus.Array([], signature="s"),
            "Weight": dbus.Double(0.5),
            "Nice": dbus.Int16(-5),
            "Port": dbus.UInt16(8080),
            "Offset": dbus.Int64(-42),
            "Unit": dbus.ObjectPath(PREFIX + "/x"),
            "Signature": dbus.Signature("a{sv}"),
            "Nested": dbus.Dictionary({"inner": dbus.Dictionary({"k": dbus.UInt32(7)}, signature="sv")}, signature="sv"),
        },
        signature="sv",
    )


class Units(dbus.service.FallbackObject):
    def _unit(self, rel):
        name = unescape(rel.lstrip("/"))
        if name == DENIED:
            raise dbus.exceptions.DBusException("access denied", name="org.freedesktop.DBus.Error.AccessDenied")
        return name

    @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="s", out_signature="a{sv}", rel_path_keyword="rel")
    def GetAll(self, interface, rel):
        SERVED["GetAll"] += 1
        name = self._unit(rel)
        if interface == "org.freedesktop.systemd1.Unit":
            return unit_properties(name)
        raise dbus.exceptions.DBusException("no such interface", name="org.freedesktop.DBus.Error.UnknownInterface")

    @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="ss", out_signature="v", rel_path_keyword="rel")
    def Get(self, interface, prop, rel):
        name = self._unit(rel)
        if interface == "org.freedesktop.systemd1.Service" and name.endswith(".service"):
            entry = UNITS.get(name)
            values = {"MainPID": entry[4] if entry else 0, "NRestarts": entry[5] if entry else 0}
            if prop in values:
                return dbus.UInt32(values[prop])
        if interface == "org.freedesktop.systemd1.Unit" and prop in unit_properties(name):
            return unit_properties(name)[prop]
        raise dbus.exceptions.DBusException("no such property", name="org.freedesktop.DBus.Error.UnknownProperty")


    @dbus.service.signal("org.freedesktop.DBus.Properties", signature="sa{sv}as", rel_path_keyword="rel_path")
    def PropertiesChanged(self, interface, changed, invalidated, rel_path=None):
        pass


def escape(name):
    return "".join(c if c.isalnum() and not (i == 0 and c.isdigit()) else "_%02x" % ord(c) for i, c in enumerate(name))


class Manager(dbus.service.Object):
    def __init__(self, bus, units):
        super().__init__(bus, MANAGER)
        self.units = units

    @dbus.service.method("org.freedesktop.systemd1.Manager", in_signature="", out_signature="")
    def Subscribe(self):
        pass

    @dbus.service.method("test.FakeSystemd", in_signature="sss", out_signature="")
    def SetUnitState(self, name, active, sub):
        load, _, _, since, pid, restarts = UNITS.get(name, ("loaded", "", "", 0, 0, 0))
        UNITS[name] = (load, active, sub, since + 1, pid, restarts)
        changed = dbus.Dictionary({"ActiveState": dbus.String(active), "SubState": dbus.String(sub)}, signature="sv")
        self.units.PropertiesChanged("org.freedesktop.systemd1.Unit", changed, dbus.Array([], signature="s"),
                                     rel_path="/" + escape(name))

    @dbus.service.method("test.FakeSystemd", in_signature="", out_signature="u")
    def GetAllCalls(self):
        return dbus.UInt32(SERVED["GetAll"])


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(sys.argv[1])
    name = dbus.service.BusName("org.freedesktop.systemd1", bus)
    units = Units(bus, PREFIX)
    Manager(bus, units)
    print("ready", flush=True)
    GLib.MainLoop().run()
    del name


if __name__ == "__main__":
    main()
