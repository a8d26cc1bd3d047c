package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/state"
)

// ErrDiskFull refuses events while the store is over its quota or its
// file system under the free-space floor: taken, they could fill the disk,
// and Pebble ends the process on a write it cannot make.
var ErrDiskFull = errors.New("actors: the store's disk is nearly full; input is refused until space is freed")

// DefaultMinFreeBytes is the free-space floor of the store's file system.
const DefaultMinFreeBytes = config.DefaultMinFreeBytes

// How often the disk guard measures: every diskCheckEvery near a limit,
// less often the more room there is (a measurement reads Pebble's
// metrics and statfs, and was 40% of an idle gateway's CPU at 500 ms).
// The ingest log writes at most a few hundred MB/s, so 1 GiB of room
// lasts longer than the slowest interval.
const (
	diskCheckEvery = 500 * time.Millisecond
	diskRoomy      = 1 << 30 // 1 GiB of room: every 2 s
	diskRoomier    = 4 << 30 // 4 GiB: every 5 s
)

// diskGuard measures the store and its file system, and switches input
// off while either limit is crossed, on again once it is back with a
// margin (95% of the quota, 110% of the floor), so it does not flap.
type diskGuard struct {
	store  *state.Store
	quota  uint64 // 0: none
	floor  uint64
	logger *slog.Logger

	refusing atomic.Bool
	reason   atomic.Pointer[string]
	space    atomic.Pointer[state.DiskSpace]
	refused  atomic.Uint64 // events refused
	failures atomic.Uint64 // measurements that failed
}

// check measures once and updates the guard; it returns when to measure
// next.
func (d *diskGuard) check() time.Duration {
	sp, err := d.store.DiskSpace()
	if err != nil {
		if d.failures.Add(1) == 1 {
			d.logger.Error("cannot measure the store's disk; the disk guard keeps its last state", "error", err)
		}
		return diskCheckEvery
	}
	d.space.Store(&sp)
	d.update(sp)
	return d.nextCheck(sp)
}

// nextCheck is the interval to the next measurement: the room left before
// either limit decides it.
func (d *diskGuard) nextCheck(sp state.DiskSpace) time.Duration {
	if d.refusing.Load() {
		return diskCheckEvery
	}
	var room uint64
	if sp.FreeBytes > d.floor {
		room = sp.FreeBytes - d.floor
	}
	if d.quota > 0 {
		if sp.StoreBytes >= d.quota {
			room = 0
		} else {
			room = min(room, d.quota-sp.StoreBytes)
		}
	}
	switch {
	case room >= diskRoomier:
		return 5 * time.Second
	case room >= diskRoomy:
		return 2 * time.Second
	}
	return diskCheckEvery
}

// update switches input off or on for a measurement.
func (d *diskGuard) update(sp state.DiskSpace) {
	over := d.quota > 0 && sp.StoreBytes >= d.quota
	low := sp.FreeBytes < d.floor
	if !d.refusing.Load() {
		if !over && !low {
			return
		}
		why := fmt.Sprintf("the store's file system has %d bytes free, under the floor of %d (durability.min_free_bytes)", sp.FreeBytes, d.floor)
		if over {
			why = fmt.Sprintf("the store takes %d bytes, over its quota of %d (durability.max_store_bytes)", sp.StoreBytes, d.quota)
		}
		d.reason.Store(&why)
		d.refusing.Store(true)
		d.logger.Error("disk guard: refusing input until space is freed; outputs keep delivering", "reason", why)
		return
	}
	if (d.quota == 0 || sp.StoreBytes < d.quota/100*95) && sp.FreeBytes >= d.floor/10*11 {
		d.refusing.Store(false)
		d.logger.Info("disk guard: space is back; taking input again", "store_bytes", sp.StoreBytes, "free_bytes", sp.FreeBytes, "refused_events", d.refused.Load())
	}
}

// admit returns ErrDiskFull (wrapped with the reason) while refusing.
func (d *diskGuard) admit() error {
	if d == nil || !d.refusing.Load() {
		return nil
	}
	d.refused.Add(1)
	if r := d.reason.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrDiskFull, *r)
	}
	return ErrDiskFull
}

// run measures until stop is closed, at the interval check returns.
func (d *diskGuard) run(stop <-chan struct{}) {
	t := time.NewTimer(diskCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			t.Reset(d.check())
		}
	}
}

// DiskRefusal says why the gateway refuses input for lack of disk, or "".
func (g *Gateway) DiskRefusal() string {
	if g.disk == nil || !g.disk.refusing.Load() {
		return ""
	}
	if r := g.disk.reason.Load(); r != nil {
		return *r
	}
	return ErrDiskFull.Error()
}

var (
	descStoreBytes   = prometheus.NewDesc("millstream_store_bytes", "Bytes the gateway's store takes on disk.", nil, nil)
	descDiskFree     = prometheus.NewDesc("millstream_store_disk_free_bytes", "Bytes free on the store's file system.", nil, nil)
	descDiskRefusing = prometheus.NewDesc("millstream_disk_guard_refusing", "1 while the disk guard refuses input (store over max_store_bytes or disk under min_free_bytes).", nil, nil)
	descDiskRefused  = prometheus.NewDesc("millstream_disk_guard_refused_events_total", "Events refused by the disk guard.", nil, nil)
)

// diskCollector exports the disk guard's figures.
type diskCollector struct{ g *Gateway }

func (c diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStoreBytes
	ch <- descDiskFree
	ch <- descDiskRefusing
	ch <- descDiskRefused
}

func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.g.disk
	if d == nil {
		return
	}
	if sp := d.space.Load(); sp != nil {
		ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(sp.StoreBytes))
		ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(sp.FreeBytes))
	}
	refusing := 0.0
	if d.refusing.Load() {
		refusing = 1
	}
	ch <- prometheus.MustNewConstMetric(descDiskRefusing, prometheus.GaugeValue, refusing)
	ch <- prometheus.MustNewConstMetric(descDiskRefused, prometheus.CounterValue, float64(d.refused.Load()))
}
