"""/proc sampling: memory, CPU and threads of a server's whole process tree, and the load of the rest of the machine."""

import os
import threading
import time


def read_status(pid):
    """{"VmRSS", "VmSize", "VmHWM", "VmPeak" (KiB), "Threads"} of /proc/PID/status; {} when the process is gone."""
    vals = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmSize:", "VmHWM:", "VmPeak:", "Threads:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return vals


def process_tree(root):
    """root and its descendants (by scanning /proc for parent pids)."""
    parents = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                data = f.read()
            ppid = int(data[data.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(d))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def cpu_seconds(pids):
    """CPU time of the processes: utime + stime from /proc/PID/stat (all threads, dead ones included, in clock ticks),
    or the sum of the live threads' run time from /proc/PID/task/*/schedstat (nanoseconds) when that is larger."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        stat = sched = 0.0
        try:
            with open("/proc/%d/stat" % p) as f:
                data = f.read()
            fields = data[data.rindex(")") + 2:].split()
            stat = (int(fields[11]) + int(fields[12])) / tck
            for t in os.listdir("/proc/%d/task" % p):
                try:
                    with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                        sched += int(f.read().split()[0]) / 1e9
                except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                    pass
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
        total += max(stat, sched)
    return total


def thread_cpu(pid):
    """{tid: seconds on the CPU} of the live threads of pid, from /proc/PID/task/TID/schedstat."""
    out = {}
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    out[int(t)] = int(f.read().split()[0]) / 1e9
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                pass
    except FileNotFoundError:
        pass
    return out


def reset_hwm(pids):
    for p in pids:
        try:
            with open("/proc/%d/clear_refs" % p, "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


class NoiseMeter:
    """How much CPU the rest of the machine (processes this script did not start) used during an interval: total busy
    time from /proc/stat minus the CPU time of this script and of everything it started, plus the steal time."""

    @staticmethod
    def _snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
        steal = v[7] if len(v) > 7 else 0
        tck = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        ours = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        ours_s = ours / tck + cpu_seconds([p for p in process_tree(os.getpid()) if p != os.getpid()])
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        return time.monotonic(), busy / tck, steal / tck, ours_s, load

    def __init__(self):
        self.a = self._snap()

    def stop(self):
        b = self._snap()
        dt = max(1e-9, b[0] - self.a[0])
        return dict(other_cores=round(max(0.0, (b[1] - self.a[1]) - (b[3] - self.a[3])) / dt, 2),
                    steal_cores=round((b[2] - self.a[2]) / dt, 2), loadavg_end=b[4], seconds=round(dt, 1))


class MemSampler:
    """Samples the summed VmRSS and VmSize of a process tree every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_vsz = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.tree = [pid]

    def start(self):
        self.tree = process_tree(self.pid)
        reset_hwm(self.tree)
        self._thread.start()
        return self

    def _run(self):
        last_tree = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_tree > 0.5:
                self.tree = process_tree(self.pid)
                last_tree = time.monotonic()
            rss = vsz = 0
            for p in self.tree:
                s = read_status(p)
                rss += s.get("VmRSS", 0)
                vsz += s.get("VmSize", 0)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_vsz = max(self.peak_vsz, vsz)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        # VmHWM (reset at start) catches a peak between samples for single-process servers.
        hwm = sum(read_status(p).get("VmHWM", 0) for p in self.tree)
        self.peak_rss = max(self.peak_rss, hwm)
        return self
