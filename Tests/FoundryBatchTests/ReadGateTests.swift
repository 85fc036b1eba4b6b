import NIOCore
import NIOEmbedded
import Testing
@testable import FoundryBatch

/// The gate before postgres-nio's handler: what arrives unasked waits for a `read()`, and is
/// dropped when the connection ends first.
struct ReadGateTests {
    /// Stands for postgres-nio's handler: records what reaches it, and passes a `read()` on
    /// only when told to (a row stream with no demand swallows them).
    final class Consumer: ChannelDuplexHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer
        var events: [String] = []
        var passesReads = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            events.append("read " + String(buffer: unwrapInboundIn(data)))
        }
        func channelReadComplete(context: ChannelHandlerContext) { events.append("complete") }
        func channelInactive(context: ChannelHandlerContext) { events.append("inactive") }
        func read(context: ChannelHandlerContext) {
            if passesReads { context.read() }
        }
    }

    func channel() throws -> (EmbeddedChannel, Consumer) {
        let consumer = Consumer()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ReadGate())
        try channel.pipeline.syncOperations.addHandler(consumer)
        // Active, as a connected socket is: the gate replays only on a live channel.
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        return (channel, consumer)
    }

    func deliver(_ text: String, to channel: EmbeddedChannel) {
        channel.pipeline.fireChannelRead(NIOAny(ByteBuffer(string: text)))
        channel.pipeline.fireChannelReadComplete()
    }

    @Test func whatArrivesUnaskedWaitsForTheNextRead() throws {
        let (channel, consumer) = try channel()
        deliver("a", to: channel)
        #expect(consumer.events == ["read a", "complete"], "the first read was asked for when the channel opened")
        deliver("b", to: channel)
        #expect(consumer.events.count == 2, "nothing reaches a handler that did not ask")
        consumer.passesReads = true
        channel.read()
        channel.embeddedEventLoop.run()
        #expect(consumer.events == ["read a", "complete", "read b", "complete"], "a read replays what was held, in order")
    }

    @Test func whatIsHeldWhenTheConnectionEndsIsDroppedAndTheEndPassedOn() throws {
        let (channel, consumer) = try channel()
        deliver("a", to: channel)
        deliver("cut off", to: channel)
        channel.pipeline.fireChannelInactive()
        #expect(consumer.events == ["read a", "complete", "inactive"], "the end reaches the handler, the unasked bytes do not")
        consumer.passesReads = true
        channel.read()
        channel.embeddedEventLoop.run()
        #expect(!consumer.events.contains("read cut off"), "dropped for good, not replayed after the end")
    }
}
