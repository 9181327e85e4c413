package holds

import (
	"fmt"
	"strconv"
	"strings"
)

// ParsePoints reads clicks written "x,y;x,y" (holds_client's --points); a "!" before a pair
// ("!x,y") marks it "not hold". The error names the bad entry.
func ParsePoints(text string) ([]Point, error) {
	var points []Point
	for index, pair := range strings.Split(text, ";") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		background := strings.HasPrefix(pair, "!")
		xy := strings.Split(strings.TrimPrefix(pair, "!"), ",")
		if len(xy) != 2 {
			return nil, fmt.Errorf("point %d %q must be two numbers x,y", index+1, pair)
		}
		x, errX := strconv.ParseFloat(strings.TrimSpace(xy[0]), 64)
		y, errY := strconv.ParseFloat(strings.TrimSpace(xy[1]), 64)
		if errX != nil || errY != nil {
			return nil, fmt.Errorf("point %d %q is not two numbers", index+1, pair)
		}
		points = append(points, Point{X: x, Y: y, Background: background})
	}
	if len(points) == 0 {
		return nil, fmt.Errorf("no points given (expected \"x,y;x,y\")")
	}
	return points, checkPoints(points)
}
