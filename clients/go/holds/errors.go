package holds

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ModelError is a refused or failed request: the HTTP status, error code and message. From the
// container (FromSageMaker false; SageMaker's 424 ModelError carries them) the code is ours, e.g.
// 404 "unknown_image_id" (the photo's embedding expired: resend the photo), 413
// "payload_too_large", 400 "bad_request"; from SageMaker itself (FromSageMaker true) it is
// SageMaker's, e.g. 400 "ValidationError" (unknown endpoint), 413 for a body over 6 MiB,
// "ThrottlingException".
type ModelError struct {
	StatusCode    int
	Code          string
	Message       string
	FromSageMaker bool
}

func (e *ModelError) Error() string {
	return fmt.Sprintf("endpoint answered %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Throttled says whether the request may succeed later unchanged: 429, 503, or a throttling code.
func (e *ModelError) Throttled() bool {
	_, throttling := retry.DefaultThrottleErrorCodes[e.Code]
	return throttling || e.StatusCode == 429 || e.StatusCode == 503
}

// ClientError says whether the request itself is wrong (a 4xx that is not throttling).
func (e *ModelError) ClientError() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && !e.Throttled()
}

// UnknownImage says whether a follow-up's image_id or session is gone: resend the photo.
func (e *ModelError) UnknownImage() bool {
	return e.StatusCode == 404 || e.StatusCode == 410
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

// fromSDK maps an InvokeEndpoint failure to a *ModelError when an HTTP answer came back: the
// container's own status and error through SageMaker's ModelError, else SageMaker's. Transport
// failures (no answer) are returned as they are. body is the error answer's body (withErrorBody).
func fromSDK(err error, body []byte) error {
	var model *types.ModelError
	if errors.As(err, &model) && model.OriginalStatusCode != nil && *model.OriginalStatusCode > 0 {
		original := ""
		if model.OriginalMessage != nil {
			original = *model.OriginalMessage
		}
		return ParseModelError(int(*model.OriginalStatusCode), []byte(original))
	}
	var response *smithyhttp.ResponseError
	if !errors.As(err, &response) {
		return err
	}
	// An answer came back; its error body may not have (SageMaker can close the connection
	// after a 413 while the body is still being sent): then the status is what is known.
	sageMaker := &ModelError{StatusCode: response.HTTPStatusCode(), Message: errorMessage("", body), FromSageMaker: true}
	var api smithy.APIError
	if errors.As(err, &api) {
		sageMaker.Message = errorMessage(api.ErrorMessage(), body)
		if code := api.ErrorCode(); code != "UnknownError" { // the SDK's name for "no error type"
			sageMaker.Code = code
		}
	}
	if sageMaker.Message == "" {
		sageMaker.Message = response.Err.Error()
	}
	return sageMaker
}
