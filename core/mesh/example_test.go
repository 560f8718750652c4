package mesh_test

import (
	"fmt"

	"github.com/meshcast/meshcast/core/mesh"
)

func ExampleThird() {
	c, err := mesh.Third(35.681236, 139.767125) // Tokyo Station
	if err != nil {
		panic(err)
	}
	b := c.Bounds()
	fmt.Println(c, c.Level(), c.Parent())
	fmt.Printf("%.6f %.6f %.6f %.6f\n", b.MinLat, b.MinLon, b.MaxLat, b.MaxLon)
	// Output:
	// 53394611 third 533946
	// 35.675000 139.762500 35.683333 139.775000
}

func ExampleCover() {
	cs, err := mesh.Cover(35.681236, 139.767125, 500)
	if err != nil {
		panic(err)
	}
	fmt.Println(cs)
	// Output: [53394610 53394611 53394620 53394621]
}

func ExampleParse() {
	_, err := mesh.Parse("533986")
	fmt.Println(err)
	// Output: mesh: parse "533986": second-order digits (5th and 6th) must be 0-7: invalid mesh code
}
