namespace Gateway.Listeners;

/// <summary>
/// Endpoint metadata naming the listeners an endpoint answers on. YARP routes get it from their
/// <c>Metadata:Listeners</c> entry; admin endpoints get <see cref="ListenerName.Admin"/>.
/// </summary>
internal sealed class ListenerMetadata
{
    private readonly int _mask;

    public ListenerMetadata(IReadOnlyCollection<ListenerName> listeners)
    {
        Listeners = listeners;
        foreach (var l in listeners)
        {
            _mask |= 1 << (int)l;
        }
    }

    /// <summary>The listeners, in configuration order.</summary>
    public IReadOnlyCollection<ListenerName> Listeners { get; }

    /// <summary>Whether the endpoint answers on <paramref name="listener"/>.</summary>
    public bool Allows(ListenerName listener) => (_mask & (1 << (int)listener)) != 0;
}
