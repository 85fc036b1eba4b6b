/// The API a row is sent to: what the queue keeps with each row and the transport routes by.
public enum ServiceAPI: String, Sendable, CaseIterable, Codable {
    case chat, responses, embeddings

    /// The `/openai/v1/...` path suffix of this API.
    public var path: String {
        switch self {
        case .chat: "chat/completions"
        case .responses: "responses"
        case .embeddings: "embeddings"
        }
    }
}
