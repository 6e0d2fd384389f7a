namespace Gateway.Configuration;

/// <summary>
/// A configuration section of named entries (<c>Policies:{name}</c>) with value equality, so that the option records
/// holding one compare by content: a reload sees what changed with <c>==</c>. The configuration binder fills it like
/// any <see cref="Dictionary{TKey, TValue}"/>; keys compare with the comparer given.
/// </summary>
internal sealed class ConfigMap<TValue> : Dictionary<string, TValue>, IEquatable<ConfigMap<TValue>>
{
    public ConfigMap()
        : base(StringComparer.Ordinal)
    {
    }

    public ConfigMap(IEqualityComparer<string> comparer)
        : base(comparer)
    {
    }

    /// <summary>Same keys (by this map's comparer) with equal values.</summary>
    public bool Equals(ConfigMap<TValue>? other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }

        if (other is null || other.Count != Count)
        {
            return false;
        }

        foreach (var (key, value) in this)
        {
            if (!other.TryGetValue(key, out var theirs) || !EqualityComparer<TValue>.Default.Equals(value, theirs))
            {
                return false;
            }
        }

        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as ConfigMap<TValue>);

    /// <summary>Order-independent: the entries' hashes combined with XOR.</summary>
    public override int GetHashCode()
    {
        var hash = Count;
        foreach (var (key, value) in this)
        {
            hash ^= HashCode.Combine(Comparer.GetHashCode(key), value);
        }

        return hash;
    }
}

/// <summary>A configuration list (<c>PriorityClasses:0</c>, <c>:1</c>, ...) with value equality, in order.</summary>
internal sealed class ConfigList<T> : List<T>, IEquatable<ConfigList<T>>
{
    public bool Equals(ConfigList<T>? other) => ReferenceEquals(this, other) || (other is not null && this.SequenceEqual(other));

    public override bool Equals(object? obj) => Equals(obj as ConfigList<T>);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var item in this)
        {
            hash.Add(item);
        }

        return hash.ToHashCode();
    }
}
