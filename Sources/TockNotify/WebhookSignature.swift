import Crypto
import Foundation
import TockCore

/// Standard Webhooks 1.0 (https://www.standardwebhooks.com): the `webhook-signature` header is `v1,` and the base64
/// HMAC-SHA256 of `id.timestamp.body`, keyed by the bytes the secret's base64 (after `whsec_`) names.
public enum WebhookSignature {
    public static func sign(secret: String, id: String, timestamp: Int64, body: [UInt8]) throws(TockError) -> String {
        guard secret.hasPrefix("whsec_"), let key = Data(base64Encoded: String(secret.dropFirst(6))), key.count >= 24 else {
            throw TockError(.invalidInput, field: "secret", "a signing secret is whsec_ and at least 24 bytes in base64")
        }
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))
        return "v1," + Data(code).base64EncodedString()
    }
}
