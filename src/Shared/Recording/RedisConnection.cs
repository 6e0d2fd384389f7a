using System.Globalization;
using StackExchange.Redis;

namespace Contracts.Recording;

/// <summary>Turns what users type for a Redis server into a StackExchange.Redis configuration.</summary>
public static class RedisConnection
{
    /// <summary>
    /// Accepts a StackExchange.Redis connection string (<c>127.0.0.1:6379,password=x</c>) or a URL
    /// (<c>redis://[:password@]host:port[/db]</c>, <c>rediss://</c> for TLS) and returns options that reconnect by
    /// themselves (<c>abortConnect=false</c>), so a process can start while Redis is down and recover when it returns.
    /// </summary>
    /// <exception cref="ArgumentException">The text is neither a URL nor a connection string.</exception>
    public static ConfigurationOptions Parse(string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        ConfigurationOptions options;
        if (text.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
            {
                throw new ArgumentException($"'{text}' is not a valid redis:// URL (expected redis://[:password@]host[:port][/db]).", nameof(text));
            }

            options = new ConfigurationOptions { Ssl = uri.Scheme.Equals("rediss", StringComparison.OrdinalIgnoreCase) };
            options.EndPoints.Add(uri.Host, uri.IsDefaultPort || uri.Port <= 0 ? 6379 : uri.Port);
            if (!string.IsNullOrEmpty(uri.UserInfo))
            {
                var parts = Uri.UnescapeDataString(uri.UserInfo).Split(':', 2);
                if (parts.Length == 2)
                {
                    if (parts[0].Length > 0)
                    {
                        options.User = parts[0];
                    }

                    options.Password = parts[1];
                }
                else
                {
                    options.Password = parts[0];
                }
            }

            var db = uri.AbsolutePath.Trim('/');
            if (db.Length > 0)
            {
                if (!int.TryParse(db, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
                {
                    throw new ArgumentException($"'{text}': the database in a redis:// URL must be a number (was '{db}').", nameof(text));
                }

                options.DefaultDatabase = n;
            }
        }
        else
        {
            try
            {
                options = ConfigurationOptions.Parse(text);
            }
            catch (ArgumentException ex)
            {
                throw new ArgumentException($"'{text}' is not a valid Redis connection string: {ex.Message}", nameof(text), ex);
            }

            if (options.EndPoints.Count == 0)
            {
                throw new ArgumentException($"'{text}' names no Redis endpoint (expected host:port or redis://host:port).", nameof(text));
            }
        }

        options.AbortOnConnectFail = false;
        options.ConnectRetry = Math.Max(options.ConnectRetry, 3);
        options.ConnectTimeout = Math.Min(options.ConnectTimeout, 5000);
        return options;
    }
}
