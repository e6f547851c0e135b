"""etcd's client-visible errors: the exact message strings and the gRPC code each one travels with.

Clients (Go clientv3, etcdctl, kube-apiserver) map errors back to typed values by the message
string, and decide whether to retry by the code, so both must match etcd byte for byte
(api/v3rpc/rpctypes/error.go). The code is kept here as the name of a ``grpc.StatusCode`` member so
that this layer does not depend on gRPC; the API layer turns it into a status.
"""

from __future__ import annotations


class EtcdError(Exception):
    """An error with etcd's message and gRPC status code name."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EtcdError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"EtcdError({self.message!r}, {self.code})"


def go_code(code: str) -> str:
    """A status code's name as Go's grpc prints it (``PERMISSION_DENIED`` -> PermissionDenied)."""
    return "".join(part.capitalize() for part in code.split("_"))


def _e(message: str, code: str) -> EtcdError:
    return EtcdError("etcdserver: " + message, code)


INVALID = "INVALID_ARGUMENT"
PRECONDITION = "FAILED_PRECONDITION"
UNAVAILABLE = "UNAVAILABLE"

ErrEmptyKey = _e("key is not provided", INVALID)
ErrKeyNotFound = _e("key not found", INVALID)
ErrValueProvided = _e("value is provided", INVALID)
ErrLeaseProvided = _e("lease is provided", INVALID)
ErrTooManyOps = _e("too many operations in txn request", INVALID)
ErrDuplicateKey = _e("duplicate key given in txn request", INVALID)
ErrCompacted = _e("mvcc: required revision has been compacted", "OUT_OF_RANGE")
ErrFutureRev = _e("mvcc: required revision is a future revision", "OUT_OF_RANGE")
ErrNoSpace = _e("mvcc: database space exceeded", "RESOURCE_EXHAUSTED")

ErrLeaseNotFound = _e("requested lease not found", "NOT_FOUND")
ErrLeaseExist = _e("lease already exists", PRECONDITION)
ErrLeaseTTLTooLarge = _e("too large lease TTL", "OUT_OF_RANGE")

ErrWatchCanceled = _e("watch canceled", "CANCELLED")

ErrMemberExist = _e("member ID already exist", PRECONDITION)
ErrPeerURLExist = _e("Peer URLs already exists", PRECONDITION)
ErrMemberNotEnoughStarted = _e(
    "re-configuration failed due to not enough started members", PRECONDITION
)
ErrMemberBadURLs = _e("given member URLs are invalid", INVALID)
ErrMemberNotFound = _e("member not found", "NOT_FOUND")
ErrMemberNotLearner = _e("can only promote a learner member", PRECONDITION)
ErrLearnerNotReady = _e(
    "can only promote a learner member which is in sync with leader", PRECONDITION
)
ErrTooManyLearners = _e("too many learner members in cluster", PRECONDITION)
ErrClusterIDMismatch = _e("cluster ID mismatch", PRECONDITION)

ErrRequestTooLarge = _e("request is too large", INVALID)
ErrTooManyRequests = _e("too many requests", "RESOURCE_EXHAUSTED")

ErrRootUserNotExist = _e("root user does not exist", PRECONDITION)
ErrRootRoleNotExist = _e("root user does not have root role", PRECONDITION)
ErrUserAlreadyExist = _e("user name already exists", PRECONDITION)
ErrUserEmpty = _e("user name is empty", INVALID)
ErrUserNotFound = _e("user name not found", PRECONDITION)
ErrRoleAlreadyExist = _e("role name already exists", PRECONDITION)
ErrRoleNotFound = _e("role name not found", PRECONDITION)
ErrRoleEmpty = _e("role name is empty", INVALID)
ErrAuthFailed = _e("authentication failed, invalid user ID or password", INVALID)
ErrPermissionNotGiven = _e("permission not given", INVALID)
ErrPermissionDenied = _e("permission denied", "PERMISSION_DENIED")
ErrRoleNotGranted = _e("role is not granted to the user", PRECONDITION)
ErrPermissionNotGranted = _e("permission is not granted to the role", PRECONDITION)
ErrAuthNotEnabled = _e("authentication is not enabled", PRECONDITION)
ErrInvalidAuthToken = _e("invalid auth token", "UNAUTHENTICATED")
ErrInvalidAuthMgmt = _e("invalid auth management", INVALID)
ErrAuthOldRevision = _e("revision of auth store is old", INVALID)
# The auth package's own texts: what a few calls answer (as Unknown) when etcd hands the auth
# store's error to gRPC without translating it (Hash, HashKV, Defragment, Snapshot).
_AUTH_TEXT = {
    ErrPermissionDenied: "auth: permission denied",
    ErrUserEmpty: "auth: user name is empty",
    ErrUserNotFound: "auth: user not found",
    ErrInvalidAuthToken: "auth: invalid auth token",
    ErrAuthOldRevision: "auth: revision in header is old",
}


def untranslated(err: EtcdError) -> EtcdError:
    text = _AUTH_TEXT.get(err)
    return EtcdError(text, "UNKNOWN") if text is not None else err


# etcd has no gRPC error for this one: it travels as Unknown with the auth package's own text.
ErrNoPasswordUser = EtcdError(
    "auth: authentication failed, password was given for no password user", "UNKNOWN"
)

ErrNoLeader = _e("no leader", UNAVAILABLE)
ErrNotLeader = _e("not leader", PRECONDITION)
ErrLeaderChanged = _e("leader changed", UNAVAILABLE)
ErrNotCapable = _e("not capable", UNAVAILABLE)
ErrStopped = _e("server stopped", UNAVAILABLE)
ErrTimeout = _e("request timed out", UNAVAILABLE)
REQUEST_TIMEOUT = 7.0
"""Seconds before a request that was not applied fails with ErrTimeout (etcd: 5 s + 2 x the
election timeout with its defaults)."""
ErrTimeoutDueToLeaderFail = _e(
    "request timed out, possibly due to previous leader failure", UNAVAILABLE
)
ErrTimeoutDueToConnectionLost = _e(
    "request timed out, possibly due to connection lost", UNAVAILABLE
)
ErrTimeoutWaitAppliedIndex = _e(
    "request timed out, waiting for the applied index took too long", UNAVAILABLE
)
ErrUnhealthy = _e("unhealthy cluster", UNAVAILABLE)
ErrCorrupt = _e("corrupt cluster", "DATA_LOSS")
ErrNotSupportedForLearner = _e("rpc not supported for learner", UNAVAILABLE)
ErrBadLeaderTransferee = _e("bad leader transferee", PRECONDITION)
ErrRequestCanceled = _e("request canceled", "CANCELLED")
