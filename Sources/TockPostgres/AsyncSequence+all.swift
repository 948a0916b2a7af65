extension AsyncSequence {
    /// Every element, in order: results must always be read, or a server-side error goes unseen.
    public func all() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }
}
