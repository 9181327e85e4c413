package holds

import (
	"strings"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// SageMaker's stateful-session headers. aws-sdk-go-v2 1.17 predates sessions (InvokeEndpointInput
// has no SessionId), so the request header is added by a build-step middleware on the call's
// stack (before signing) and the answer's headers are read from the raw HTTP response.
const (
	SessionHeader       = "X-Amzn-SageMaker-Session-Id"
	NewSessionHeader    = "X-Amzn-SageMaker-New-Session-Id"
	ClosedSessionHeader = "X-Amzn-SageMaker-Closed-Session-Id"
	// NewSession as the session id opens a session.
	NewSession = "NEW_SESSION"
)

// withSession is an InvokeEndpoint option sending session ("" sends no header).
func withSession(session string) func(*sagemakerruntime.Options) {
	return func(o *sagemakerruntime.Options) {
		if session != "" {
			o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(SessionHeader, session))
		}
	}
}

// sessionOf is (session now in use, session closed) from an answer's headers: the new session's
// id ("<id>; Expires=<UTC>") when one was opened, else the one sent (never NEW_SESSION).
func sessionOf(metadata middleware.Metadata, sent string) (current, closed string) {
	if sent == NewSession {
		sent = ""
	}
	response, ok := awsmiddleware.GetRawResponse(metadata).(*smithyhttp.Response)
	if !ok {
		return sent, ""
	}
	closed = response.Header.Get(ClosedSessionHeader)
	if opened := response.Header.Get(NewSessionHeader); opened != "" {
		return strings.TrimSpace(strings.Split(opened, ";")[0]), closed
	}
	if closed != "" {
		return "", closed
	}
	return sent, ""
}
