// Which dockerd the agent follows: DOCKER_HOST when it names a unix socket.
import { DOCKER_SOCKET, dockerSocketPath } from '../../agent/src/containers';

describe('dockerSocketPath', () => {
  test('unset or empty: the default socket', () => {
    expect(dockerSocketPath({})).toEqual({ path: DOCKER_SOCKET });
    expect(dockerSocketPath({ DOCKER_HOST: '' })).toEqual({ path: DOCKER_SOCKET });
  });

  test('a unix socket: its path', () => {
    expect(dockerSocketPath({ DOCKER_HOST: 'unix:///run/user/0/docker.sock' })).toEqual({ path: '/run/user/0/docker.sock' });
  });

  test('another scheme or a relative path: the default, with the reason', () => {
    for (const host of ['tcp://10.0.0.1:2375', 'ssh://me@box', 'unix://docker.sock', '/var/run/docker.sock']) {
      const r = dockerSocketPath({ DOCKER_HOST: host });
      expect(r.path).toBe(DOCKER_SOCKET);
      expect(r.ignored).toBe(`DOCKER_HOST=${host} is not a unix:///absolute/path socket; using ${DOCKER_SOCKET}`);
    }
  });
});
