import Foundation
import PostgresNIO

/// Decodes a `Decodable` record from a PostgreSQL row by column name, as GRDB does for the
/// SQLite queue: the two queues share their records and their queries' column names.
///
/// PostgreSQL folds unquoted names to lowercase (`estimated_tokens AS estimatedTokens`
/// arrives as `estimatedtokens`), so names are matched without regard to case.
struct PostgresRowDecoder: Decoder {
    let cells: [String: PostgresCell]
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ row: PostgresRow) {
        var cells: [String: PostgresCell] = [:]
        for cell in row { cells[cell.columnName.lowercased()] = cell }
        self.cells = cells
    }

    /// Decodes every row of `rows` as a `T`.
    static func all<T: Decodable>(_ type: T.Type, _ rows: PostgresRowSequence) async throws -> [T] {
        var records: [T] = []
        for try await row in rows { records.append(try T(from: PostgresRowDecoder(row))) }
        return records
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Keyed<Key>(cells: cells))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a row decodes as a record, not a list"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        guard cells.count == 1, let cell = cells.values.first else {
            throw DecodingError.typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "a single value needs a one-column row"))
        }
        return Cell(cell: cell, codingPath: codingPath)
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let cells: [String: PostgresCell]
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { cells.keys.compactMap { Key(stringValue: $0) } }

        func cell(_ key: Key) throws -> PostgresCell {
            guard let cell = cells[key.stringValue.lowercased()] else {
                throw DecodingError.keyNotFound(key, .init(codingPath: [key], debugDescription: "no column \(key.stringValue)"))
            }
            return cell
        }

        func contains(_ key: Key) -> Bool { cells[key.stringValue.lowercased()] != nil }
        func decodeNil(forKey key: Key) throws -> Bool { try cell(key).bytes == nil }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try Cell(cell: try cell(key), codingPath: [key]).decode(T.self)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            throw DecodingError.typeMismatch(type, .init(codingPath: [key], debugDescription: "a column holds no record"))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: [key], debugDescription: "a column holds no list"))
        }

        func superDecoder() throws -> any Decoder { PostgresRowDecoder(cells: cells) }
        func superDecoder(forKey key: Key) throws -> any Decoder { CellDecoder(cell: try cell(key), codingPath: [key]) }
    }

    init(cells: [String: PostgresCell]) { self.cells = cells }

    /// One column, for the values inside a record (and the raw values behind enums).
    struct CellDecoder: Decoder {
        let cell: PostgresCell
        var codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "a column holds no record"))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a column holds no list"))
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { Cell(cell: cell, codingPath: codingPath) }
    }

    struct Cell: SingleValueDecodingContainer {
        let cell: PostgresCell
        var codingPath: [any CodingKey]

        func decodeNil() -> Bool { cell.bytes == nil }

        func value<T: PostgresDecodable>(_ type: T.Type) throws -> T where T._DecodableType == T {
            do {
                return try cell.decode(T.self)
            } catch {
                throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath, debugDescription: "column \(cell.columnName): \(error)"))
            }
        }

        func decode(_ type: Bool.Type) throws -> Bool { try value(Bool.self) }
        func decode(_ type: String.Type) throws -> String { try value(String.self) }
        func decode(_ type: Double.Type) throws -> Double { try value(Double.self) }
        func decode(_ type: Float.Type) throws -> Float { try value(Float.self) }
        func decode(_ type: Int.Type) throws -> Int { try value(Int.self) }
        /// An integer column as `T`, refused (not trapped) when it does not fit.
        func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
            guard let value = T(exactly: try value(Int.self)) else {
                throw DecodingError.dataCorruptedError(in: self, debugDescription: "column \(cell.columnName) does not fit \(T.self)")
            }
            return value
        }

        func decode(_ type: Int8.Type) throws -> Int8 { try integer(Int8.self) }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer(Int16.self) }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer(Int32.self) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer(Int64.self) }
        func decode(_ type: UInt.Type) throws -> UInt { try integer(UInt.self) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(UInt8.self) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(UInt16.self) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(UInt32.self) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(UInt64.self) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            // As GRDB reads them: a time is seconds since 1970 (Date's own Decodable counts from 2001).
            if T.self == Date.self, let date = Date(timeIntervalSince1970: try value(Double.self)) as? T { return date }
            return try T(from: CellDecoder(cell: cell, codingPath: codingPath))
        }
    }
}
