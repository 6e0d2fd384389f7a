using System.CommandLine;
using System.CommandLine.Parsing;

namespace Replay.Cli;

/// <summary>
/// A duration flag (<c>--duration</c>, <c>--timeout</c>, …): its value is parsed by
/// <see cref="ValueParsers.TryParseDuration"/> when the command line is parsed, so a bad value is a parse error
/// (exit 2) naming the flag and the accepted forms, e.g. <c>--duration: '10x' is not a duration (e.g. 500ms, 10s, 2m,
/// 1h, 00:01:30).</c> Null when the flag is not given; ranges (&gt; 0) are the validators' to check, naming the flag.
/// </summary>
internal sealed class DurationOption : Option<TimeSpan?>
{
    /// <summary>A duration flag named <paramref name="name"/> (<c>--duration</c>), with optional short aliases.</summary>
    public DurationOption(string name, params string[] aliases)
        : base(name, aliases)
    {
        HelpName = "DURATION";
        CustomParser = static result => Parse(result);
    }

    private static TimeSpan? Parse(ArgumentResult result)
    {
        if (result.Tokens.Count == 0)
        {
            return null;
        }

        var text = result.Tokens[^1].Value;
        if (ValueParsers.TryParseDuration(text, out var value))
        {
            return value;
        }

        var flag = result.Parent is OptionResult option ? option.Option.Name : result.Argument.Name;
        result.AddError(ValueParsers.NotADuration(flag, text));
        return null;
    }
}
