package holds

import (
	"encoding/json"
	"fmt"
)

// ModelError is the container's answer to a failed request: HTTP status, error code, message.
// A 404 with Code "unknown_image_id" means the image_id expired: resend the photo.
type ModelError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *ModelError) Error() string {
	return fmt.Sprintf("endpoint answered %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Throttled says whether the request may be retried later (429 or 503).
func (e *ModelError) Throttled() bool { return e.StatusCode == 429 || e.StatusCode == 503 }

// ClientError says whether the request itself is wrong (4xx other than 429).
func (e *ModelError) ClientError() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && e.StatusCode != 429
}

// ParseModelError builds a ModelError from the container's status and its JSON error body
// ({"error": code, "message": text, "request_id": id}); a non-JSON body becomes the message.
func ParseModelError(statusCode int, body []byte) *ModelError {
	var doc struct{ Error, Message string }
	if json.Unmarshal(body, &doc) == nil && doc.Error != "" {
		return &ModelError{StatusCode: statusCode, Code: doc.Error, Message: doc.Message}
	}
	return &ModelError{StatusCode: statusCode, Message: string(body)}
}
