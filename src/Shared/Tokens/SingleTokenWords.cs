namespace Contracts.Tokens;

/// <summary>
/// 128 ASCII words, each with its leading space and each a single cl100k token, so a text of N of them counts as N
/// tokens with <see cref="TokenCounter"/> and needs no JSON escaping. ModelSim writes its output text with them and the
/// replay tool its synthetic prompts, so both count tokens the same way.
/// </summary>
public static class SingleTokenWords
{
    private static readonly string[] s_words =
    [
        " the", " model", " token", " server", " request", " time", " data", " system", " value", " batch",
        " queue", " slot", " answer", " question", " world", " light", " water", " house", " river", " city",
        " stone", " green", " blue", " red", " small", " large", " quick", " slow", " bright", " dark",
        " early", " late", " first", " last", " new", " old", " good", " great", " little", " long",
        " high", " low", " open", " close", " simple", " clear", " strong", " free", " full", " empty",
        " north", " south", " east", " west", " summer", " winter", " morning", " evening", " night", " day",
        " paper", " letter", " number", " story", " music", " garden", " window", " table", " chair", " door",
        " road", " bridge", " forest", " mountain", " ocean", " island", " cloud", " rain", " snow", " wind",
        " fire", " earth", " metal", " glass", " wood", " bread", " apple", " orange", " coffee", " tea",
        " book", " page", " word", " line", " point", " place", " state", " field", " group", " order",
        " power", " energy", " signal", " memory", " engine", " network", " packet", " stream", " frame", " message",
        " and", " of", " to", " in", " with", " for", " on", " at", " from", " by",
        " is", " was", " will", " can", " has", " had", " were", " are",
    ];

    /// <summary>The words, in a fixed order (indexes are stable: generated text depends on them).</summary>
    public static IReadOnlyList<string> All => s_words;
}
