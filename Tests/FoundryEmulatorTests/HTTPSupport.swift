import AsyncHTTPClient
import Foundation
import FoundryTestSupport
import NIOCore
import NIOHTTP1
@testable import FoundryEmulator

/// A small HTTP client for talking to the emulator the way a caller on the wire would.
struct Wire {
    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    }

    let base: String

    func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: Data? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Answer(status: Int(response.status.code), headers: response.headers, body: Data(bytes.readableBytesView))
    }

    func form(_ path: String, _ fields: [String: String]) async throws -> Answer {
        let body = fields.sorted { $0.key < $1.key }.map { key, value in
            "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)"
        }.joined(separator: "&")
        return try await send(.POST, path, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(body.utf8))
    }

    func json(_ path: String, _ object: [String: Any], headers: [(String, String)]) async throws -> Answer {
        try await send(.POST, path, headers: headers + [("Content-Type", "application/json")], body: try JSONSerialization.data(withJSONObject: object))
    }
}

extension EmulatorConfiguration {
    static let secret = "test-secret-value"

    static func testing(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: secret, apiKeys: ["test-key"], change)
    }
}

extension Emulator {
    var wire: Wire { Wire(base: baseURL) }

    /// A bearer token for the demo app, fetched through the token endpoint.
    func demoToken() async throws -> String {
        let answer = try await wire.form(
            "/\(EmulatorConfiguration.demoTenantID)/oauth2/v2.0/token",
            [
                "grant_type": "client_credentials", "client_id": EmulatorConfiguration.demoClientID,
                "client_secret": EmulatorConfiguration.secret, "scope": "https://cognitiveservices.azure.com/.default",
            ]
        )
        return answer.json["access_token"] as? String ?? ""
    }
}

func chat(_ content: String, model: String = "gpt-5-mini", maxTokens: Int? = nil) -> [String: Any] {
    var body: [String: Any] = ["model": model, "messages": [["role": "user", "content": content]]]
    if let maxTokens { body["max_tokens"] = maxTokens }
    return body
}
