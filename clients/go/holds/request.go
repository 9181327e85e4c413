// Package holds builds requests for the holds SageMaker endpoint and maps its errors to Go values.
//
// It mirrors holds_client (the Python client): a photo goes as JSON (base64) while the encoded
// body fits SageMaker's 6 MiB real-time limit, raw (image bytes, prompt in custom attributes)
// when only the raw file fits, and is refused with a *ModelError (413) otherwise.
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

// Point is one click (x, y) in upright photo pixels.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
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

// RawAttributes is the prompt as custom attributes: "points=x,y;x,y".
func RawAttributes(points []Point) string {
	parts := make([]string, len(points))
	for i, p := range points {
		parts[i] = formatNumber(p.X) + "," + formatNumber(p.Y)
	}
	return "points=" + strings.Join(parts, ";")
}

// BuildRequest chooses JSON or raw as holds_client's auto format does.
func BuildRequest(image []byte, points []Point, maxRequestBytes int) (Request, error) {
	if len(points) == 0 {
		return Request{}, fmt.Errorf("at least one point is needed")
	}
	encoded := 4*int(math.Ceil(float64(len(image))/3)) + jsonOverheadBytes
	if encoded <= maxRequestBytes {
		body, err := json.Marshal(map[string]any{
			"image_base64": base64.StdEncoding.EncodeToString(image), "points": points})
		return Request{Body: body, ContentType: "application/json"}, err
	}
	attributes := RawAttributes(points)
	if ct := rawType(image); ct != "" && len(image) <= maxRequestBytes && len(attributes) <= MaxCustomAttributesChars {
		return Request{Body: image, ContentType: ct, CustomAttributes: attributes}, nil
	}
	return Request{}, &ModelError{StatusCode: 413, Code: "payload_too_large", Message: fmt.Sprintf(
		"the photo is %d bytes, over SageMaker's real-time limit of %d bytes: shrink it", len(image), maxRequestBytes)}
}
