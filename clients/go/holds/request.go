// Package holds calls the holds SageMaker endpoint (the SAM climbing-hold extractor) from a Go
// backend, with aws-sdk-go-v2, and maps its errors to Go values.
//
// It mirrors holds_client (the Python client): a photo goes as JSON (base64) while the encoded
// body fits SageMaker's 6 MiB real-time limit, raw (image bytes, prompt in custom attributes)
// when only the raw file fits, and is refused with a *ModelError (413) otherwise. Coordinates
// are (x, y) pixels of the upright photo (EXIF orientation applied).
package holds

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxPayloadBytes is SageMaker's real-time request limit (6 MiB), as in holds_client.
const MaxPayloadBytes = 6 * 1024 * 1024

// MaxCustomAttributesChars is SageMaker's X-Amzn-SageMaker-Custom-Attributes limit.
const MaxCustomAttributesChars = 1024

// jsonOverheadBytes is the room left for the prompt next to the base64 image (holds_client's 4096).
const jsonOverheadBytes = 4096

// Point is one click (x, y) in upright photo pixels; Background marks "not hold" (label 0).
type Point struct {
	X          float64
	Y          float64
	Background bool
}

// label is the wire label: 1 on a hold, 0 for "not hold".
func (p Point) label() int {
	if p.Background {
		return 0
	}
	return 1
}

// MarshalJSON writes the wire form {"x": X, "y": Y, "label": 1|0}.
func (p Point) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"x": p.X, "y": p.Y, "label": p.label()})
}

// Outputs says what the answer carries; a zero field leaves the server's default (an RGBA PNG
// cut-out and an 8-bit PNG mask at the photo's size, the old service's outputs).
//
// ResultFormat: "png", "webp" or "none". MaskFormat: "png", "png1" (1-bit), "rle" (COCO RLE in
// the JSON answer) or "none". MaxSide: scale both outputs so the longest side is at most this
// many pixels. A 12 MP PNG cut-out is about 9 MB, over SageMaker's 6 MiB answer limit: ask for
// "webp", a MaxSide, or "none" there.
type Outputs struct {
	ResultFormat string
	MaskFormat   string
	MaxSide      int
}

// pairs is the non-default outputs as (key, value) in wire order.
func (o Outputs) pairs() [][2]string {
	var pairs [][2]string
	if o.ResultFormat != "" {
		pairs = append(pairs, [2]string{"result_format", o.ResultFormat})
	}
	if o.MaskFormat != "" {
		pairs = append(pairs, [2]string{"mask_format", o.MaskFormat})
	}
	if o.MaxSide > 0 {
		pairs = append(pairs, [2]string{"max_side", strconv.Itoa(o.MaxSide)})
	}
	return pairs
}

// document is the outputs as the JSON request's "outputs" object.
func (o Outputs) document() map[string]any {
	doc := map[string]any{}
	for _, pair := range o.pairs() {
		doc[pair[0]] = pair[1]
	}
	if o.MaxSide > 0 {
		doc["max_side"] = o.MaxSide
	}
	return doc
}

// Request is one InvokeEndpoint body with its content type and custom attributes ("" for none).
type Request struct {
	Body             []byte
	ContentType      string
	CustomAttributes string
}

var rawTypes = []struct {
	magic       []byte
	contentType string
}{
	{[]byte("\xff\xd8\xff"), "image/jpeg"},
	{[]byte("\x89PNG"), "image/png"},
	{[]byte("RIFF"), "image/webp"},
}

func rawType(image []byte) string {
	for _, t := range rawTypes {
		if bytes.HasPrefix(image, t.magic) {
			return t.contentType
		}
	}
	return ""
}

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// RawAttributes is the prompt and outputs as custom attributes: "points=x,y;x,y[&labels=1,0]&...".
func RawAttributes(points []Point, outputs Outputs) string {
	coords := make([]string, len(points))
	labels := make([]string, len(points))
	background := false
	for i, p := range points {
		coords[i] = formatNumber(p.X) + "," + formatNumber(p.Y)
		labels[i] = strconv.Itoa(p.label())
		background = background || p.Background
	}
	parts := []string{"points=" + strings.Join(coords, ";")}
	if background {
		parts = append(parts, "labels="+strings.Join(labels, ","))
	}
	for _, pair := range outputs.pairs() {
		parts = append(parts, pair[0]+"="+pair[1])
	}
	return strings.Join(parts, "&")
}

func checkPoints(points []Point) error {
	if len(points) == 0 {
		return fmt.Errorf("at least one point is needed")
	}
	for i, p := range points {
		if math.IsNaN(p.X) || math.IsNaN(p.Y) || math.IsInf(p.X, 0) || math.IsInf(p.Y, 0) {
			return fmt.Errorf("point %d (%v, %v) is not finite", i+1, p.X, p.Y)
		}
	}
	return nil
}

// BuildRequest carries the photo as holds_client's auto format does: JSON while the base64 body
// fits maxRequestBytes, else raw (JPEG, PNG or WebP whose prompt fits the custom attributes),
// else a *ModelError with status 413 (nothing is sent).
func BuildRequest(image []byte, points []Point, outputs Outputs, maxRequestBytes int) (Request, error) {
	if err := checkPoints(points); err != nil {
		return Request{}, err
	}
	encoded := 4*int(math.Ceil(float64(len(image))/3)) + jsonOverheadBytes
	if encoded <= maxRequestBytes {
		body, err := json.Marshal(map[string]any{
			"image_base64": base64.StdEncoding.EncodeToString(image), "points": points, "outputs": outputs.document()})
		return Request{Body: body, ContentType: "application/json"}, err
	}
	attributes := RawAttributes(points, outputs)
	if ct := rawType(image); ct != "" && len(image) <= maxRequestBytes && len(attributes) <= MaxCustomAttributesChars {
		return Request{Body: image, ContentType: ct, CustomAttributes: attributes}, nil
	}
	return Request{}, &ModelError{StatusCode: 413, Code: "payload_too_large", Message: fmt.Sprintf(
		"the photo is %d bytes, over SageMaker's real-time limit of %d bytes: shrink it", len(image), maxRequestBytes)}
}

// BuildFollowUp is a JSON request with more clicks on a photo sent before: by imageID, or (imageID
// "") through the session the request's session header names; closeSession ends that session.
func BuildFollowUp(imageID string, points []Point, outputs Outputs, closeSession bool) (Request, error) {
	doc := map[string]any{"outputs": outputs.document()}
	if !closeSession || len(points) > 0 {
		if err := checkPoints(points); err != nil {
			return Request{}, err
		}
		doc["points"] = points
	}
	if imageID != "" {
		doc["image_id"] = imageID
	}
	if closeSession {
		doc["close_session"] = true
	}
	body, err := json.Marshal(doc)
	return Request{Body: body, ContentType: "application/json"}, err
}
