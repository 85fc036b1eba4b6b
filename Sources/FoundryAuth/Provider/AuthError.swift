/// Why a token could not be had: what happened, with which credential, and what to do.
///
/// Messages never contain a secret, a token or a key.
public struct AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The credential is not set up on this machine (missing variables, no `az`, no identity endpoint).
        case unavailable
        /// Entra or the identity endpoint refused: wrong or expired secret, unknown app or tenant.
        case rejected
        /// The credential is set up wrongly (bad PEM file, plain http to a remote host).
        case misconfigured
        /// The identity service could not be reached or answered nonsense.
        case network
    }

    public var kind: Kind
    /// The credential that failed, e.g. "client-secret".
    public var credential: String
    /// What happened and what to do about it.
    public var message: String
    /// Entra's AADSTS code, when Entra gave one.
    public var aadsts: Int?

    public init(_ kind: Kind, credential: String, _ message: String, aadsts: Int? = nil) {
        self.kind = kind
        self.credential = credential
        self.message = message
        self.aadsts = aadsts
    }

    public var description: String { "\(credential): \(message)" }
}
