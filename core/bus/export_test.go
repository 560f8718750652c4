package bus

import "strconv"

// VehicleHashTag returns the hash tag of a vehicle's state key, "{v<n>}" (tests).
func VehicleHashTag(id string) string { return "{v" + strconv.Itoa(bucket(id, vehicleBuckets)) + "}" }

// SetBatching sets the bucket counts and the batch cap of the buses opened afterwards and returns
// a function that restores them (benchmarks; not safe while buses are open).
func SetBatching(vehicles, meshes, max int) (restore func()) {
	v, m, x := vehicleBuckets, meshBuckets, maxBatch
	vehicleBuckets, meshBuckets, maxBatch = vehicles, meshes, max
	return func() { vehicleBuckets, meshBuckets, maxBatch = v, m, x }
}

// BatchStats returns the script calls made by a Redis bus's batchers so far and the requests they
// carried: vehicle compare-and-set and mesh writes.
func BatchStats(b Bus) (casCalls, casItems, writeCalls, writeItems int64) {
	rb := b.(*redisBus)
	for _, bt := range rb.casB {
		casCalls += bt.batches.Load()
		casItems += bt.items.Load()
	}
	for _, bt := range rb.writeB {
		writeCalls += bt.batches.Load()
		writeItems += bt.items.Load()
	}
	return
}
