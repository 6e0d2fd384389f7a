namespace Replay.Sources;

/// <summary>Loads the workload a command names: <c>--source</c> (recording, trace, template) or, for <c>load</c>, <c>--template</c> or the synthetic request.</summary>
internal static class SourceLoader
{
    /// <summary>Loads it.</summary>
    /// <exception cref="InputException">The input is missing, unknown or malformed (the message says which and why).</exception>
    public static async Task<Workload> LoadAsync(SourceSettings settings, CancellationToken cancellationToken)
    {
        if (settings.Source is not { } source)
        {
            return settings.Template is { } template
                ? await TemplateSource.LoadAsync(template, settings, cancellationToken).ConfigureAwait(false)
                : SyntheticSource.Create(settings);
        }

        if (source.StartsWith("azure-llm:", StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(source[10..]))
            {
                throw new InputException($"--source azure-llm:FILE needs a trace file after 'azure-llm:' (was '{source}').");
            }

            return await AzureTraceSource.LoadAsync(source["azure-llm:".Length..], settings, cancellationToken).ConfigureAwait(false);
        }

        if (source.StartsWith("template:", StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(source[9..]))
            {
                throw new InputException($"--source template:FILE needs a template file after 'template:' (was '{source}').");
            }

            return await TemplateSource.LoadAsync(source["template:".Length..], settings, cancellationToken).ConfigureAwait(false);
        }

        if (string.IsNullOrEmpty(settings.Recording))
        {
            throw new InputException($"--source '{source}' is a recording store: name the recording with --recording NAME (replay list --source {source} shows them).");
        }

        var (store, description) = await RecordingStores.OpenAsync(source, cancellationToken).ConfigureAwait(false);
        await using (store.ConfigureAwait(false))
        {
            try
            {
                return await RecordingSource.LoadAsync(store, description, settings.Recording, settings, cancellationToken).ConfigureAwait(false);
            }
            catch (StackExchange.Redis.RedisException ex)
            {
                throw new InputException($"--source '{source}': reading recording '{settings.Recording}' failed ({ex.Message}).", ex);
            }
        }
    }
}
