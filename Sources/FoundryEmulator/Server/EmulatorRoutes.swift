import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A connection the emulator drops on purpose, to test a client's recovery.
struct DroppedConnection: Error {}

extension HTTPField.Name {
    static let apiKey = Self("api-key")!
    static let clientRequestID = Self("x-ms-client-request-id")!
    static let apimRequestID = Self("apim-request-id")!
    static let requestID = Self("x-request-id")!
    static let retryAfter = Self("retry-after")!
    static let retryAfterMs = Self("retry-after-ms")!
    static let remainingRequests = Self("x-ratelimit-remaining-requests")!
    static let remainingTokens = Self("x-ratelimit-remaining-tokens")!
    static let identityHeader = Self("X-IDENTITY-HEADER")!
    static let metadata = Self("Metadata")!
}

/// Builds JSON answers.
enum JSONResponse {
    static func make(_ status: Int, _ object: Any, headers: HTTPFields = [:]) -> Response {
        let data = EmulatorJSON.bytes(object)
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}

extension Request {
    func collectBody() async throws -> Data {
        var buffer = try await body.collect(upTo: 32 << 20)
        return Data(buffer.readBytes(length: buffer.readableBytes) ?? [])
    }

    func query(_ name: String) -> String? {
        uri.queryParameters[Substring(name)].map(String.init)
    }
}
