package actors

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/asynkron/protoactor-go/actor"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/millstream/millstream/internal/logging"
)

// The libraries a gateway runs log through the gateway's own logger, each
// with its component, so that every line has one format and level and no
// terminal colour codes (protoactor's default handler writes coloured
// text to stderr, whatever the gateway's --log-format).

// newActorSystem is the gateway's local actor system, logging as
// component=actor. Its start line comes with every gateway (and every
// test), so it is debug.
func newActorSystem(logger *slog.Logger) *actor.ActorSystem {
	l := logging.Component(slog.New(logging.Rewrite(logger.Handler(), logging.Demote("actor system started"))), "actor")
	return actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return l })))
}

// mqttLogger is the embedded broker's (mochi's) logger: component=mqtt,
// with its lines put in our terms by fixMQTTRecord.
func mqttLogger(logger *slog.Logger) *slog.Logger {
	return logging.Component(slog.New(logging.Rewrite(logger.Handler(), fixMQTTRecord)), "mqtt")
}

// mochiRoutine are mochi's info lines of every start and stop (one per
// hook, too); the gateway logs its own start and stop.
var mochiRoutine = logging.Demote("added hook", "stopping hook", "mochi mqtt starting", "mochi mqtt server started",
	"gracefully stopping server", "mochi mqtt server stopped")

func fixMQTTRecord(r *slog.Record) bool {
	switch r.Message {
	case "":
		// mochi's listeners log the end of a connection as a warning with
		// no message; a client going away is no warning.
		r.Message = "client disconnected"
		r.Level = slog.LevelDebug
		if err := logging.ErrorAttr(*r); err != nil && !routineDisconnect(err) {
			r.Level = slog.LevelInfo
		}
	case mqtt.ErrMinimumKeepalive.Error():
		// Keep-alive 0 (none) is the client's choice, made on every
		// connection (the fault tests' publishers make it): no warning
		// per connection.
		r.Level = slog.LevelDebug
	default:
		return mochiRoutine(r)
	}
	return true
}

// routineDisconnect tells a client closing or dropping its connection (or
// letting it time out) from a connection ended by an error worth a line.
func routineDisconnect(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
