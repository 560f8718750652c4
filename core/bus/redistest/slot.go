package redistest

import "strings"

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// KeySlot returns the Redis Cluster hash slot of a key or shard channel: CRC16 (XMODEM) of the
// hash tag (the part between the first "{" and the next "}" when that is non-empty) or of the
// whole key, modulo 16384.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % SlotCount)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
