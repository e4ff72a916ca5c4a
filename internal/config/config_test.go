package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRate(t *testing.T) {
	var r Rate
	require.NoError(t, r.UnmarshalText([]byte("10/15m")))
	require.Equal(t, Rate{N: 10, Window: 15 * time.Minute}, r)
	for _, bad := range []string{"10", "x/1m", "0/1m", "-1/1m", "5/forever", "5/0s"} {
		require.Error(t, new(Rate).UnmarshalText([]byte(bad)), bad)
	}
}

func TestDefaultsAndProductionSafeguards(t *testing.T) {
	t.Setenv("APP_ENV", "")
	cfg, err := Load()
	require.NoError(t, err)
	require.Equal(t, Development, cfg.Env)
	require.True(t, cfg.MigrateOnStart(), "development migrates on start by default")
	require.Equal(t, 15*time.Minute, cfg.AccessTokenTTL)
	require.Equal(t, Rate{N: 10, Window: 15 * time.Minute}, cfg.LoginRateIPEmail)
	require.Equal(t, "127.0.0.1:9464", cfg.MetricsAddr, "metrics are on loopback by default")

	t.Setenv("APP_ENV", "production")
	t.Setenv("APP_PUBLIC_URL", "http://parlor.example")
	_, err = Load()
	require.Error(t, err)
	require.Contains(t, err.Error(), "APP_JWT_KEYS is required in production")
	require.Contains(t, err.Error(), "APP_PUBLIC_URL must be https")

	t.Setenv("APP_JWT_KEYS", "k1:AAAA")
	t.Setenv("APP_PUBLIC_URL", "https://parlor.example")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	cfg, err = Load()
	require.NoError(t, err)
	require.False(t, cfg.MigrateOnStart(), "production does not migrate on start unless told")
	t.Setenv("DB_MIGRATE_ON_START", "true")
	cfg, err = Load()
	require.NoError(t, err)
	require.True(t, cfg.MigrateOnStart())

	t.Setenv("APP_ENV", "staging")
	_, err = Load()
	require.ErrorContains(t, err, `APP_ENV must be "development" or "production"`)

	t.Setenv("APP_ENV", "development")
	t.Setenv("APP_ACCESS_TOKEN_TTL", "1h")
	_, err = Load()
	require.ErrorContains(t, err, "APP_ACCESS_TOKEN_TTL must be in (0, 15m]")

	t.Setenv("APP_ACCESS_TOKEN_TTL", "5m")
	t.Setenv("APP_TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr")
	_, err = Load()
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "not-a-cidr"), err.Error())

	t.Setenv("APP_TRUSTED_PROXIES", "")
	t.Setenv("APP_WS_WRITER_NICE", "20")
	_, err = Load()
	require.ErrorContains(t, err, "APP_WS_WRITER_NICE must be between 0 and 19, not 20")

	t.Setenv("APP_WS_WRITER_NICE", "")
	t.Setenv("APP_METRICS_ADDR", ":8080")
	_, err = Load()
	require.ErrorContains(t, err, "APP_METRICS_ADDR must differ from APP_ADDR")
}

func TestCreditPackages(t *testing.T) {
	var p Packages
	require.NoError(t, p.UnmarshalText([]byte("small:100:199:USD, big:1200:1999:eur")))
	require.Equal(t, Packages{{ID: "small", Credits: 100, Price: 199, Currency: "usd"}, {ID: "big", Credits: 1200, Price: 1999, Currency: "eur"}}, p)
	for _, bad := range []string{"small:100:199", "small:0:199:usd", "small:100:-1:usd", "small:100:199:dollars", "a:1:1:usd,a:2:2:usd", ":1:1:usd"} {
		require.Error(t, new(Packages).UnmarshalText([]byte(bad)), bad)
	}
	t.Setenv("APP_PLATFORM_FEE_BPS", "10001")
	_, err := Load()
	require.ErrorContains(t, err, "APP_PLATFORM_FEE_BPS")
}

// TestAMistypedEnumeratedSettingIsRefusedByName: a value outside an enumerated setting's
// set stops the start with the variable's name and the values it takes, instead of quietly
// becoming the default ("inf" used to log at info).
func TestAMistypedEnumeratedSettingIsRefusedByName(t *testing.T) {
	for _, level := range []string{"inf", "warning", "verbose", "INFO+2", "debug-4", "0"} {
		t.Run("APP_LOG_LEVEL="+level, func(t *testing.T) {
			t.Setenv("APP_LOG_LEVEL", level)
			_, err := Load()
			require.ErrorContains(t, err, `APP_LOG_LEVEL must be one of debug, info, warn, error, not "`+level+`"`)
		})
	}
	for level, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "WARN": slog.LevelWarn,
	} {
		t.Run("APP_LOG_LEVEL="+level, func(t *testing.T) {
			t.Setenv("APP_LOG_LEVEL", level)
			cfg, err := Load()
			require.NoError(t, err)
			require.Equal(t, want, cfg.SlogLevel())
		})
	}
	t.Run("APP_BODY_LIMIT", func(t *testing.T) {
		t.Setenv("APP_BODY_LIMIT", "64 kilobytes")
		_, err := Load()
		require.ErrorContains(t, err, `APP_BODY_LIMIT must be a size like 64K or 1M, not "64 kilobytes"`)
	})
}

// TestProductionRefusesToFanOutInProcessUnlessItIsTheOnlyInstance: without REDIS_URL the
// fan-out, presence and throttles stay in one process, which is silently wrong as soon as a
// second instance runs; production refuses it unless APP_SINGLE_INSTANCE says so.
func TestProductionRefusesToFanOutInProcessUnlessItIsTheOnlyInstance(t *testing.T) {
	t.Setenv("APP_ENV", "production")
	t.Setenv("APP_JWT_KEYS", "k1:AAAA")
	t.Setenv("APP_PUBLIC_URL", "https://parlor.example")
	t.Setenv("REDIS_URL", "")
	_, err := Load()
	require.ErrorContains(t, err, "REDIS_URL is required in production")
	require.ErrorContains(t, err, "set REDIS_URL, or APP_SINGLE_INSTANCE=true")

	t.Setenv("APP_SINGLE_INSTANCE", "true")
	_, err = Load()
	require.NoError(t, err, "one instance may fan out in process when it says so")

	t.Setenv("APP_SINGLE_INSTANCE", "false")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	_, err = Load()
	require.NoError(t, err)

	t.Setenv("APP_ENV", "development")
	t.Setenv("REDIS_URL", "")
	_, err = Load()
	require.NoError(t, err, "development runs without Redis")
}

// TestShutdownDrainDefaultsByEnvironment: production keeps answering for 5s after SIGTERM
// while /readyz says 503, so load balancers stop sending first; development stops at once.
func TestShutdownDrainDefaultsByEnvironment(t *testing.T) {
	t.Setenv("APP_ENV", "development")
	cfg, err := Load()
	require.NoError(t, err)
	require.Zero(t, cfg.ShutdownDrain())

	t.Setenv("APP_ENV", "production")
	t.Setenv("APP_JWT_KEYS", "k1:AAAA")
	t.Setenv("APP_PUBLIC_URL", "https://parlor.example")
	t.Setenv("APP_SINGLE_INSTANCE", "true")
	cfg, err = Load()
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, cfg.ShutdownDrain())

	t.Setenv("APP_SHUTDOWN_DRAIN", "0s")
	cfg, err = Load()
	require.NoError(t, err)
	require.Zero(t, cfg.ShutdownDrain(), "an explicit 0 turns the drain off in production")

	t.Setenv("APP_ENV", "development")
	t.Setenv("APP_SHUTDOWN_DRAIN", "2s")
	cfg, err = Load()
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, cfg.ShutdownDrain())

	t.Setenv("APP_SHUTDOWN_DRAIN", "-1s")
	_, err = Load()
	require.ErrorContains(t, err, "APP_SHUTDOWN_DRAIN must be between 0s and 1m0s, not -1s")
}
