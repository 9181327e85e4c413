package holds

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// maxErrorBodyBytes bounds the copy of an error answer kept for its message.
const maxErrorBodyBytes = 64 * 1024

// withErrorBody is an InvokeEndpoint option keeping a copy of an error answer's body in *body.
// aws-sdk-go-v2 1.17 reads SageMaker's modelled errors' text only from "Message", while
// SageMaker (and the rehearsal) write "message": errorMessage recovers it.
func withErrorBody(body *[]byte) func(*sagemakerruntime.Options) {
	keep := middleware.DeserializeMiddlewareFunc("HoldsKeepErrorBody", func(ctx context.Context,
		in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
		out, metadata, err := next.HandleDeserialize(ctx, in)
		response, ok := out.RawResponse.(*smithyhttp.Response)
		if err != nil || !ok || response.StatusCode < 300 {
			return out, metadata, err
		}
		// A read error (the connection closed early) is left for the SDK's deserializer to meet.
		copied, _ := io.ReadAll(io.LimitReader(response.Body, maxErrorBodyBytes))
		*body = copied
		response.Body = io.NopCloser(io.MultiReader(bytes.NewReader(copied), response.Body))
		return out, metadata, nil
	})
	return func(o *sagemakerruntime.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Deserialize.Add(keep, middleware.After)
		})
	}
}

// errorMessage is the SDK's message, else the "message" of the error body kept by withErrorBody.
func errorMessage(sdkMessage string, body []byte) string {
	if sdkMessage != "" {
		return sdkMessage
	}
	var doc struct{ Message string }
	if json.Unmarshal(body, &doc) == nil && doc.Message != "" {
		return doc.Message
	}
	return string(body)
}
