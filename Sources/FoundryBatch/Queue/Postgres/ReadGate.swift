import NIOCore

/// Hands the handler after it only what that handler asked to read.
///
/// postgres-nio (1.33) streams rows with back-pressure: while the caller is not asking for
/// rows it swallows `read()`. But when the server closes the connection, NIO drains the socket
/// without being asked, and a read that arrives in that state trips a precondition in
/// postgres-nio's row stream (`RowStreamStateMachine.channelReadComplete`): the process dies
/// with SIGILL. A connection cut in the middle of an export, a claim or a status would so kill
/// the command instead of being retried.
///
/// This gate sits just before postgres-nio's handler and holds what arrives unasked. Held
/// bytes are replayed, one read at a time, when the handler asks; when the connection ends
/// first they are dropped and the end passed on. Dropping them is safe: it is as if the
/// connection had died a moment sooner, and every step of the queue survives a lost answer.
/// (Holding the end behind them is not possible: NIO takes the handlers out of the pipeline
/// right after a channel goes inactive, so a postgres-nio never told would wait forever.)
final class ReadGate: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Event {
        case read(ByteBuffer)
        case readComplete
    }

    /// Whether the handler after this one asked to read and has not yet had its read's end.
    /// True at first: NIO asks for the first read when the channel becomes active.
    private var asked = true
    /// What arrived while nothing was asked for, in the order it arrived.
    private var held: CircularBuffer<Event> = []
    /// Whether a replay is due on the event loop.
    private var replaying = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if held.isEmpty && asked {
            context.fireChannelRead(data)
        } else {
            held.append(.read(unwrapInboundIn(data)))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if held.isEmpty && asked {
            asked = false
            context.fireChannelReadComplete()
        } else {
            held.append(.readComplete)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        held.removeAll()
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        asked = true
        guard !held.isEmpty else {
            context.read()
            return
        }
        // Not from inside the caller's `read()`: a socket delivers on a later turn of the loop too.
        guard !replaying else { return }
        replaying = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (gate, context) = bound.value
            gate.replaying = false
            gate.replay(context: context)
        }
    }

    /// Replays up to the end of one read, then asks for the next as NIO's auto-read does.
    private func replay(context: ChannelHandlerContext) {
        while asked, context.channel.isActive, let event = held.popFirst() {
            switch event {
            case .read(let buffer):
                context.fireChannelRead(wrapInboundOut(buffer))
            case .readComplete:
                asked = false
                context.fireChannelReadComplete()
                context.channel.read()
                return
            }
        }
        if asked { context.read() }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all { held.removeAll() }
        context.close(mode: mode, promise: promise)
    }
}
